"""The quickstart's objects through the official OpenAI client: chat, completions, streaming with usage, model
rewrites mapped back, LoRA adapters, and shedding of sheddable requests under saturation."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import openai
import pytest

from poolgate.api.builders import MODEL, chat, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.api.contract import SERVED_BY_HEADER
from poolgate.up.processes import wait_until
from tests.support.stacks import quickstart_objects

pytestmark = pytest.mark.xdist_group("e2e-openai")
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def quickstart(start_stack):
    stack = start_stack(*quickstart_objects())
    return stack, openai.OpenAI(
        base_url=f"{stack.url('default/inference-gateway')}/v1", api_key="unused", max_retries=0
    )


def test_chat_completions_and_streaming_with_usage(quickstart):
    stack, client = quickstart
    raw = client.chat.completions.with_raw_response.create(
        model=LLAMA, messages=[{"role": "user", "content": "Hello!"}], max_tokens=6
    )
    completion = raw.parse()
    assert completion.model == LLAMA and completion.usage.completion_tokens == 6
    assert raw.headers["x-poolgate-served-by"] in stack.endpoints("llama")
    text = client.completions.create(model="Qwen/Qwen3-8B", prompt="Once upon a time", max_tokens=3)
    assert text.model == "Qwen/Qwen3-8B" and text.usage.completion_tokens == 3
    chunks = list(
        client.chat.completions.create(
            model="Qwen/Qwen3-8B",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split() != []
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens > 0


def test_model_rewrite_splits_90_10_and_answers_with_the_name_asked_for(quickstart):
    _stack, client = quickstart
    served = Counter()
    for _ in range(100):
        raw = client.chat.completions.with_raw_response.create(
            model="food-review", messages=[{"role": "user", "content": "Is the soup good?"}], max_tokens=2
        )
        assert raw.parse().model == "food-review"  # mapped back to what the client asked for
        served[raw.headers["x-poolgate-served-model"]] += 1  # what the model server was asked for
    assert set(served) == {"food-review-v1", "food-review-v2"}
    assert 75 <= served["food-review-v1"] <= 98, served  # 90/10 (binomial sd 3)


def test_lora_adapter_requests_are_served_by_the_adapter(quickstart):
    _stack, client = quickstart
    raw = client.chat.completions.with_raw_response.create(
        model="food-review-v2", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert raw.parse().model == "food-review-v2" and raw.headers["x-poolgate-served-model"] == "food-review-v2"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_an_adapter_on_one_pod_is_served_there_however_busy_that_pod_is(start_stack):
    """Only one pod lists the adapter; it is kept busy and the other idle. Load and affinity scores alone would send
    the adapter's requests to the idle pod, which answers 404; the picker's served-model filter keeps them on the pod
    that lists it (its /v1/models, polled)."""
    slow = ("--max-num-seqs", "1", "--decode-ms", "40")
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(),
        service(),
        sim_deployment("pool", replicas=1, name="with-adapter", args=(*slow, "--lora", "ad-only-here")),
        sim_deployment("pool", replicas=1, name="plain", args=slow),
    )
    listed = {
        key: {m["id"] for m in httpx.get(f"http://{key}/v1/models").json()["data"]} for key in stack.endpoints("pool")
    }
    [holder] = [key for key, models in listed.items() if "ad-only-here" in models]
    stop = threading.Event()

    def keep_busy() -> None:  # the holder's one slot decodes 40-token streams back to back, with one more queued
        body = {"model": MODEL, "prompt": "busy", "max_tokens": 40, "stream": True}
        while not stop.is_set():
            with httpx.stream("POST", f"http://{holder}/v1/completions", json=body, timeout=60) as r:
                for _ in r.iter_bytes():
                    pass

    threads = [threading.Thread(target=keep_busy, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    client = openai.OpenAI(base_url=f"{stack.url()}/v1", api_key="unused", max_retries=0)
    try:
        for _ in range(3):
            raw = client.completions.with_raw_response.create(model="ad-only-here", prompt="hi", max_tokens=2)
            assert raw.parse().model == "ad-only-here" and raw.headers[SERVED_BY_HEADER] == holder
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def test_a_sheddable_request_gets_429_when_the_pool_is_saturated(start_stack):
    objective = {
        "apiVersion": "llm-d.ai/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": "batch", "namespace": "default"},
        "spec": {"priority": -1, "poolRef": {"name": "pool"}},
    }
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(),
        service(),
        objective,
        sim_deployment("pool", replicas=1, args=("--max-num-seqs", "1", "--decode-ms", "50")),
    )
    url = f"{stack.url()}/v1/chat/completions"
    stop = threading.Event()

    def hold_a_slot() -> None:  # a long streaming request, abandoned when the test ends
        try:
            with (
                httpx.Client(timeout=60) as client,
                client.stream("POST", url, json=chat(max_tokens=400, stream=True)) as r,
            ):
                for _ in r.iter_bytes():
                    if stop.is_set():
                        return
        except httpx.HTTPError:  # the stack stopped under it
            return

    load = [threading.Thread(target=hold_a_slot, daemon=True) for _ in range(8)]
    for thread in load:
        thread.start()
    client = openai.OpenAI(base_url=f"{stack.url()}/v1", api_key="unused", max_retries=0)
    try:

        def shed() -> bool:
            try:
                client.chat.completions.create(
                    model=LLAMA,
                    messages=[{"role": "user", "content": "later"}],
                    max_tokens=1,
                    extra_headers={"x-gateway-inference-objective": "batch"},
                    timeout=0.5,
                )
            except openai.RateLimitError as error:
                assert error.status_code == 429 and error.body["type"]  # OpenAI-style error body
                return True
            except openai.APITimeoutError:
                pass
            return False

        wait_until(shed, timeout=15, interval=0.2, message="a sheddable request answered 429")
        # a request that is not sheddable is queued, never refused
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(
                model=LLAMA, messages=[{"role": "user", "content": "now"}], max_tokens=1, timeout=0.5
            )
    finally:
        stop.set()
