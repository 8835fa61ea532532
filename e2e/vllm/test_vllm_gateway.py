"""The gateway on real vLLM: the official OpenAI client through poolgate's Envoy and picker to two vLLM processes
serving the tiny model (chat, completions, streaming with usage), and the picker's scraped state against vLLM's own
/metrics."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from e2e.vllm.gateway import vllm_gateway
from e2e.vllm.servers import MODEL, NUM_GPU_BLOCKS
from picker.pool.scraper import MetricsScraper
from picker.pool.state import EndpointSpec, PoolState
from poolgate.up.processes import wait_until

pytestmark = [pytest.mark.xdist_group("vllm"), pytest.mark.timeout(900)]  # vLLM starts in 30 s to minutes
BLOCK_SIZE = 128  # vLLM's CPU backend


@pytest.fixture(scope="module")
def gateway(vllm_pair, tmp_path_factory):
    with vllm_gateway(tmp_path_factory.mktemp("gateway"), vllm_pair) as running:
        yield running


def test_chat_completions_and_streaming_with_usage(gateway, vllm_pair):
    _stack, client = gateway
    messages = [{"role": "user", "content": "hello, what is the sum of ka and lo?"}]
    chat = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, extra_body={"ignore_eos": True})
    assert chat.model == MODEL and chat.choices[0].message.role == "assistant"
    tokenized = httpx.post(f"{vllm_pair[0].url}/tokenize", json={"model": MODEL, "messages": messages}).json()
    assert chat.usage.prompt_tokens == tokenized["count"] and chat.usage.completion_tokens == 8

    text = client.completions.create(model=MODEL, prompt="ka lo mi", max_tokens=5, extra_body={"ignore_eos": True})
    assert text.model == MODEL and text.usage.completion_tokens == 5 and text.choices[0].text

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas, "the stream carried no content"
    assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == tokenized["count"]


def test_the_picker_reads_what_vllm_reports(vllm_pair):
    """The picker's scraper, run against live vLLM, holds the values vLLM's /metrics shows: idle, then with three
    long generations running on the first server. Each loaded reading is bracketed by two of vLLM's own: once vLLM
    shows the three running, a scrape counts when both brackets show them and no request finished in between."""
    first = vllm_pair[0]
    stop = threading.Event()

    def generate(word: str) -> None:
        body = {"model": MODEL, "prompt": f"{word} " * 300, "max_tokens": 1500, "ignore_eos": True, "stream": True}
        while not stop.is_set():  # a fast machine finishes 1,500 tokens in seconds: start another
            with httpx.stream("POST", f"{first.url}/v1/completions", json=body, timeout=120) as response:
                assert response.status_code == 200, response.read()
                for _ in response.iter_lines():
                    if stop.is_set():
                        return

    async def scrape(bracketed: bool) -> tuple:
        """The scraper's reading of the first server (running, waiting, KV usage, block size, block count) and, when
        `bracketed`, vLLM's own readings just before and after it: up to 10 tries for a bracket in which both of
        vLLM's readings show the three running and no request finished (a stream that restarts voids a try)."""
        pool = PoolState()
        pool.set_endpoints([EndpointSpec(first.host, first.port, pod_name=first.name, labels={})])
        key = pool.endpoints()[0].key
        scraper = MetricsScraper(pool, interval=60, timeout=30)  # vLLM answers slowly on a busy machine
        async with scraper:  # one session for every try: starting and stopping a scraper can take its interval
            for _ in range(10 if bracketed else 1):
                before = first.samples() if bracketed else {}
                await scraper.scrape_once(key)  # a GET that crosses vLLM's close of the idle connection is resent
                m = pool.get(key).metrics
                loaded = (m.running, m.waiting, m.kv_usage, m.block_size, m.num_gpu_blocks)
                after = first.samples() if bracketed else {}
                if not bracketed or steady(before, after):
                    break
        return before, loaded, after

    def value(samples: dict, name: str) -> float:
        return sum(sample.value for sample in samples[name] if sample.name in (name, f"{name}_total"))

    def load(samples: dict) -> tuple[float, float]:
        return value(samples, "vllm:num_requests_running"), value(samples, "vllm:num_requests_waiting")

    def steady(before: dict, after: dict) -> bool:
        finished = value(after, "vllm:request_success") - value(before, "vllm:request_success")
        return load(before) == load(after) == (3, 0) and not finished

    wait_until(lambda: first.metric("vllm:num_requests_running") == 0, timeout=60, message="the first server idle")
    _, idle, _ = asyncio.run(scrape(bracketed=False))
    assert idle[:3] == (0, 0, first.metric("vllm:kv_cache_usage_perc"))
    info = first.samples()["vllm:cache_config_info"][0].labels
    assert idle[3] == int(info["block_size"]) == BLOCK_SIZE
    assert idle[4] == int(info["num_gpu_blocks"]) == NUM_GPU_BLOCKS

    threads = [threading.Thread(target=generate, args=(word,), daemon=True) for word in ("ka", "lo", "mi")]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: load(first.samples()) == (3, 0), timeout=120, message="vLLM showing three running")
        before, loaded, after = asyncio.run(scrape(bracketed=True))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert steady(before, after), (load(before), load(after))
    assert loaded[:2] == (3, 0)
    # the three outputs only grow while the scraper reads: its KV usage lies between vLLM's before and after
    kv_before, kv_after = value(before, "vllm:kv_cache_usage_perc"), value(after, "vllm:kv_cache_usage_perc")
    assert kv_before <= loaded[2] <= kv_after
    assert kv_before >= 6 / NUM_GPU_BLOCKS  # three different prompts of ~300 tokens: at least 3 x 2 full blocks
