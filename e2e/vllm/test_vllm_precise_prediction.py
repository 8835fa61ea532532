"""The precise prefix cache against real vLLM: for every request of a shared-prefix workload, the picker's
prediction of how many prompt tokens the chosen engine will find cached (`PrecisePrefixCacheProducer.
predicted_cached_tokens`, from the engines' own KV events and the engine's tokenizer and chat template) is compared
with what vLLM reports for that request (`usage.prompt_tokens_details.cached_tokens`).

The workload: 7 shared prefixes of ~1,100 tokens (8 full blocks of 128), each asked 6 questions, half as completions
and half as chat requests (the prefix as the system message); a request goes to its group's server (group number
mod 2) three times in four and to a server drawn at random otherwise, so requests meet warm caches, cold caches and
caches that evicted their prefix (48 blocks per server hold 5 of the 7 prefixes at most). Requests are sent one at a time; before each prediction the picker has seen the events of the
previous request (condition: its own index predicts the previous request's full blocks on its server, which is what
vLLM just stored). docs/vllm.md records the match rate."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from e2e.vllm.servers import MODEL, TINY_MODEL_DIR, VllmServer
from e2e.vllm.test_vllm_prefix_affinity import _words
from picker.kvcache.subscriber import EventSource
from picker.kvcache.tokenizer import LocalTokenizer
from picker.pool.state import PoolState
from picker.scheduling.precise_prefix import PrecisePrefixCacheProducer
from picker.scheduling.prefix import PrefixIndex
from picker.scheduling.request import PromptInput, SchedulingRequest
from poolgate.up.processes import wait_until

pytestmark = [pytest.mark.xdist_group("vllm"), pytest.mark.timeout(900)]  # vLLM starts in 30 s to minutes
GROUPS, QUESTIONS = 7, 6
BLOCK_SIZE = 128


def workload(seed: int) -> list[dict]:
    """The request bodies, in the order sent."""
    rng = random.Random(seed)
    prefixes = [_words(rng, 700) for _ in range(GROUPS)]
    bodies = []
    for question in range(QUESTIONS):
        for group in range(GROUPS):
            ask = _words(rng, 30)
            if question % 2:
                messages = [{"role": "system", "content": prefixes[group]}, {"role": "user", "content": ask}]
                bodies.append({"model": MODEL, "messages": messages, "max_tokens": 1})
            else:
                bodies.append({"model": MODEL, "prompt": f"{prefixes[group]} {ask}", "max_tokens": 1})
    return bodies


def reported_cached_tokens(server: VllmServer, body: dict) -> tuple[int, int]:
    """Send the request to the server; (prompt tokens, cached tokens) from the usage vLLM returns."""
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    response = httpx.post(f"{server.url}{path}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    details = usage.get("prompt_tokens_details")
    assert details is not None, f"vLLM returned no prompt_tokens_details (--enable-prompt-tokens-details): {usage}"
    return usage["prompt_tokens"], details.get("cached_tokens") or 0


def test_the_pickers_predicted_cached_tokens_match_what_vllm_reports(vllm_pair):
    keys = [server.address for server in vllm_pair]
    producer = PrecisePrefixCacheProducer(
        "precise",
        approximate=PrefixIndex(),
        tokenizer=LocalTokenizer(TINY_MODEL_DIR / "model"),  # the engine's tokenizer.json and chat template
    )
    producer.attach(PoolState())  # starts the subscriber; the servers publish on a port each (vLLM binds *:PORT)
    assert producer.subscriber is not None
    for server, key in zip(vllm_pair, keys):
        producer.subscriber.add(EventSource(key, f"tcp://{server.host}:{server.kv_events_port}"))
    try:
        # subscribed: empty both caches; their AllBlocksCleared events (published with the next engine step, so one
        # short request each) make both indexes trusted and empty
        deadline = time.monotonic() + 60
        while not all(producer.index.reliable(key) for key in keys):
            assert time.monotonic() < deadline, "no AllBlocksCleared from vLLM after /reset_prefix_cache"
            for server in vllm_pair:
                server.reset_prefix_cache()
                # a prompt of more than one block: its BlockStored tells the picker the engine's block size
                reported_cached_tokens(server, {"model": MODEL, "prompt": "ka lo " * 150, "max_tokens": 1})
            time.sleep(0.5)

        rng = random.Random(7)
        rows = []  # (kind, server, prompt tokens, predicted, reported)
        for number, body in enumerate(workload(seed=11)):
            index = number % GROUPS % 2 if rng.random() < 0.75 else rng.randrange(2)  # mostly the group's server
            server, key = vllm_pair[index], keys[index]
            request = SchedulingRequest(MODEL, PromptInput.from_body(body), body=body)
            predicted = producer.predicted_cached_tokens(request, key, time.monotonic())
            prompt_tokens, reported = reported_cached_tokens(server, body)
            rows.append(("chat" if "messages" in body else "text", server.name, prompt_tokens, predicted, reported))
            full_blocks = prompt_tokens // BLOCK_SIZE * BLOCK_SIZE
            wait_until(  # the events of this request reached the picker: its full blocks are indexed
                lambda r=request, k=key, n=full_blocks: producer.predicted_cached_tokens(r, k, time.monotonic()) == n,
                timeout=30,
                interval=0.05,
                message=f"the picker indexing the blocks vLLM stored for a request on {server.name}",
            )
    finally:
        producer.close()

    matched = sum(predicted == reported for *_, predicted, reported in rows)
    hits = sum(reported > 0 for *_, reported in rows)
    rate = matched / len(rows)
    print(f"precise prediction on real vLLM: {matched}/{len(rows)} match ({rate:.1%}); {hits} requests hit the cache")
    for row in rows:
        if row[3] != row[4]:
            print("mismatch (kind, server, prompt tokens, predicted, reported):", row)
    assert 0.1 * len(rows) <= hits <= 0.9 * len(rows)  # warm and cold caches both met (measured: 9 hits of 42)
    assert rate >= 0.95, rows
