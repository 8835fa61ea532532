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
    long generations running on the first server."""
    first = vllm_pair[0]
    busy = [threading.Event() for _ in range(3)]
    stop = threading.Event()

    def generate(word: str, started: threading.Event) -> None:
        body = {"model": MODEL, "prompt": f"{word} " * 300, "max_tokens": 1500, "ignore_eos": True, "stream": True}
        while not stop.is_set():  # a fast machine finishes 1,500 tokens in a second or two: start another
            with httpx.stream("POST", f"{first.url}/v1/completions", json=body, timeout=120) as response:
                assert response.status_code == 200, response.read()
                for _ in response.iter_lines():
                    started.set()
                    if stop.is_set():
                        return

    async def scrape() -> tuple:
        pool = PoolState()
        pool.set_endpoints([EndpointSpec(first.host, first.port, pod_name=first.name, labels={})])
        key = pool.endpoints()[0].key
        scraper = MetricsScraper(pool, interval=60)
        async with scraper:
            await scraper.scrape_once(key)
            return pool.get(key).metrics

    wait_until(lambda: first.metric("vllm:num_requests_running") == 0, timeout=60, message="the first server idle")
    idle = asyncio.run(scrape())
    assert (idle.waiting, idle.running, idle.kv_usage) == (0, 0, first.metric("vllm:kv_cache_usage_perc"))
    info = first.samples()["vllm:cache_config_info"][0].labels
    assert idle.block_size == int(info["block_size"]) == BLOCK_SIZE
    assert idle.num_gpu_blocks == int(info["num_gpu_blocks"]) == NUM_GPU_BLOCKS

    threads = [
        threading.Thread(target=generate, args=(word, event), daemon=True)
        for word, event in zip(("ka", "lo", "mi"), busy)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(event.is_set() for event in busy), timeout=60, message="three streams generating")
        before = first.samples()
        loaded = asyncio.run(scrape())
        after = first.samples()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    def value(samples: dict, name: str) -> float:
        return samples[name][0].value

    for reading in (before, after):
        assert (value(reading, "vllm:num_requests_running"), value(reading, "vllm:num_requests_waiting")) == (3, 0)
    assert (loaded.running, loaded.waiting) == (3, 0)
    # the three outputs only grow while the scraper reads: its KV usage lies between vLLM's before and after
    kv_before, kv_after = value(before, "vllm:kv_cache_usage_perc"), value(after, "vllm:kv_cache_usage_perc")
    assert kv_before <= loaded.kv_usage <= kv_after
    assert kv_before >= 6 / NUM_GPU_BLOCKS  # three different prompts of ~300 tokens: at least 3 x 2 full blocks
