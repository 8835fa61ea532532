"""Micro-benchmark of the scheduling core (`poolgate bench picker` prints its rows).

`run_picker_benchmark()` returns one dict per measurement:

- `prefix-index-memory`: resident memory of a full prefix index (default 64 endpoints x 31,250 blocks), measured
  first, as the growth of the process RSS, in MB per endpoint;
- `request-parse`: CPU cost of one request's per-request work before scheduling, for OpenAI chat bodies of about
  1 KB and 100 KB: `orjson.loads`, extracting the hashed prompt bytes, hashing up to 256 prefix blocks;
- `decision`: `Scheduler.schedule` latency (p50/p99, microseconds) and decisions per second for each profile and
  pool size, on a warmed pool: scraped metrics vary, a prefix index already holds history, and requests share
  a few long system prompts so that prefix matching does real work. Body parsing is not included.

Everything runs in-process on one core with a seeded RNG; time is measured with `time.perf_counter_ns`.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections.abc import Callable, Iterable

import orjson
from prometheus_client.samples import Sample

from picker.pool.state import EndpointSpec, PoolState
from picker.scheduling.config import builtin_config
from picker.scheduling.prefix import DEFAULT_MAX_PREFIX_TOKENS, MIN_BLOCK_SIZE_TOKENS, PrefixIndex, prefix_hashes
from picker.scheduling.request import PromptInput, SchedulingRequest
from picker.scheduling.scheduler import Scheduler
from picker.scheduling.tokens import TOKEN_BYTES

Progress = Callable[[str], None]

BLOCK_BYTES = MIN_BLOCK_SIZE_TOKENS * TOKEN_BYTES  # the default prefix block: 64 pseudo-tokens
MAX_BLOCKS = DEFAULT_MAX_PREFIX_TOKENS // MIN_BLOCK_SIZE_TOKENS


def run_picker_benchmark(
    profiles: Iterable[str] = ("llmd-default", "poolgate-default"),
    endpoint_counts: Iterable[int] = (10, 100, 1000),
    decisions: int = 2000,
    memory_endpoints: int = 64,
    memory_blocks: int = 31250,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[dict]:
    """Run every measurement and return its rows (see the module docstring)."""
    say = progress or (lambda message: None)
    say(f"prefix index memory: {memory_endpoints} endpoints x {memory_blocks} blocks")
    rows = [measure_prefix_index_memory(memory_endpoints, memory_blocks, seed)]
    for size in (1_000, 100_000):
        say(f"request parsing: {size // 1000} KB chat body")
        rows.append(measure_request_parsing(size, seed))
    for profile in profiles:
        for count in endpoint_counts:
            say(f"decisions: {profile} with {count} endpoints")
            rows.append(measure_decisions(profile, count, decisions, seed))
    return rows


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_prefix_index_memory(endpoints: int, blocks: int, seed: int) -> dict:
    """Fill a prefix index with distinct blocks for every endpoint; report the RSS it takes."""
    rng = random.Random(seed)
    gc.collect()
    before = _rss_bytes()
    index = PrefixIndex(lru_capacity=blocks)
    for e in range(endpoints):
        key = f"10.1.{e // 250}.{e % 250}:8000"
        for start in range(0, blocks, 256):
            index.credit(key, [rng.getrandbits(64) for _ in range(min(256, blocks - start))])
    gc.collect()
    grown = _rss_bytes() - before
    filled = sum(index.block_count(key) for key in index.tracked_endpoints())
    row = {
        "benchmark": "prefix-index-memory",
        "endpoints": endpoints,
        "blocks_per_endpoint": blocks,
        "entries": filled,
        "rss_mb": round(grown / 2**20, 1),
        "mb_per_endpoint": round(grown / 2**20 / endpoints, 2),
        "bytes_per_entry": round(grown / filled),
    }
    del index
    gc.collect()
    return row


def _chat_body(size: int, rng: random.Random) -> bytes:
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "tokens", "stream", "by"]
    text = " ".join(rng.choice(words) for _ in range(size // 5))
    body = {
        "model": "llama-3-8b",
        "stream": True,
        "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}],
    }
    return orjson.dumps(body)


def _per_call_us(function: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(repeat):
        function()
    return (time.perf_counter_ns() - start) / repeat / 1000


def measure_request_parsing(size: int, seed: int) -> dict:
    """Per-request CPU cost of parsing a chat body of about `size` bytes and hashing its prefix blocks."""
    raw = _chat_body(size, random.Random(seed))
    body = orjson.loads(raw)
    prompt = PromptInput.from_body(body)
    repeat = max(20, 200_000 // max(size, 1))
    loads = _per_call_us(lambda: orjson.loads(raw), repeat)
    extract = _per_call_us(lambda: PromptInput.from_body(body), repeat)
    hashes = _per_call_us(lambda: prefix_hashes(prompt.data, "llama-3-8b", "", BLOCK_BYTES, MAX_BLOCKS), repeat)
    return {
        "benchmark": "request-parse",
        "body_bytes": len(raw),
        "orjson_loads_us": round(loads, 1),
        "prompt_bytes_us": round(extract, 1),
        "prefix_hashes_us": round(hashes, 1),
        "total_us": round(loads + extract + hashes, 1),
    }


def _vllm_samples(rng: random.Random) -> list[Sample]:
    return [
        Sample("vllm:num_requests_waiting", {}, rng.randint(0, 20), None, None),
        Sample("vllm:num_requests_running", {}, rng.randint(0, 64), None, None),
        Sample("vllm:kv_cache_usage_perc", {}, rng.random(), None, None),
        Sample("vllm:cache_config_info", {"block_size": "16", "num_gpu_blocks": "31250"}, 1.0, None, None),
    ]


def measure_decisions(profile: str, endpoints: int, decisions: int, seed: int) -> dict:
    """Latency of `Scheduler.schedule` for a profile over a warmed pool of `endpoints` endpoints."""
    rng = random.Random(seed)
    now = 0.0
    pool = PoolState(clock=lambda: now)
    pool.set_endpoints(EndpointSpec(f"10.2.{i // 250}.{i % 250}", 8000) for i in range(endpoints))
    for endpoint in pool.endpoints():
        pool.apply_samples(endpoint.key, _vllm_samples(rng), now)
    config = builtin_config(profile, random.Random(seed))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation, fallbacks=2)
    system_prompts = [bytes(rng.getrandbits(8) for _ in range(4000)) for _ in range(16)]

    def request() -> SchedulingRequest:
        data = rng.choice(system_prompts) + bytes(rng.getrandbits(8) for _ in range(rng.randint(100, 1000)))
        return SchedulingRequest("llama-3-8b", PromptInput(data))

    for _ in range(min(decisions, 500)):  # warm the prefix index with history
        scheduler.on_complete(scheduler.schedule(request(), now), now)
    latencies = []
    keys = [endpoint.key for endpoint in pool.endpoints()]
    for i in range(decisions):
        if i % 20 == 0:  # a scrape refreshes a few endpoints between decisions
            now += 0.01
            for key in rng.sample(keys, min(len(keys), 5)):
                pool.apply_samples(key, _vllm_samples(rng), now)
        req = request()
        start = time.perf_counter_ns()
        decision = scheduler.schedule(req, now)
        latencies.append(time.perf_counter_ns() - start)
        scheduler.on_complete(decision, now)
    latencies.sort()
    return {
        "benchmark": "decision",
        "profile": profile,
        "endpoints": endpoints,
        "decisions": decisions,
        "decisions_per_s": round(decisions / (sum(latencies) / 1e9)),
        "p50_us": round(latencies[len(latencies) // 2] / 1000, 1),
        "p99_us": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000, 1),
    }
