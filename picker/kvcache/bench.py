"""Micro-benchmark of the precise prefix cache (`poolgate bench picker --tokenizer DIR` prints its rows):

- `precise-index-memory`: Python heap growth (tracemalloc) of one endpoint's block index holding `blocks` blocks of
  16 tokens, ingested from events of 10 blocks each;
- `tokenize`: per chat request of about 1, 10 and 100 KB (a system and a user message), the chat template + encode
  time of `LocalTokenizer` (its cache of recent prompts bypassed) and the time to cut the tokens into block keys.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from picker.kvcache.events import BlockHash, BlockStored, EventBatch
from picker.kvcache.index import BlockIndex, request_keys
from picker.kvcache.tokenizer import LocalTokenizer

_WORDS = [
    "the",
    "model",
    "caches",
    "every",
    "block",
    "of",
    "a",
    "prompt",
    "it",
    "has",
    "seen",
    "so",
    "the",
    "router",
    "should",
    "send",
    "it",
    "back",
    "there",
]


def measure_index_memory(blocks: int = 31250, seed: int = 0) -> dict:
    """Heap bytes one endpoint's index takes for `blocks` cached blocks."""
    rng = random.Random(seed)
    batches, parent = [], None
    for seq in range(blocks // 10):
        hashes: list[BlockHash] = [rng.getrandbits(64) for _ in range(10)]
        batches.append(EventBatch("kv@b@m", seq, 0.0, [BlockStored(hashes, parent, [rng.randrange(50_000)] * 160, 16)]))
        parent = hashes[-1]
    index = BlockIndex()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for batch in batches:
        index.ingest("b", batch)
    used = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    return {
        "benchmark": "precise-index-memory",
        "blocks": index.block_count("b"),
        "mb_per_endpoint": round(used / 1e6, 2),
        "bytes_per_block": round(used / max(1, index.block_count("b"))),
    }


def measure_tokenize(tokenizer_dir: str | Path, size: int, repeats: int = 20, seed: int = 0) -> dict:
    """Template + encode and block-key time for one chat request of about `size` bytes."""
    rng = random.Random(seed)
    tokenizer = LocalTokenizer(tokenizer_dir, cache_tokens=0)
    text = " ".join(rng.choice(_WORDS) for _ in range(size // 4))[:size]
    body = {
        "messages": [{"role": "system", "content": text[: size // 2]}, {"role": "user", "content": text[size // 2 :]}]
    }
    tokens: Sequence[int] = []
    start = time.perf_counter()
    for _ in range(repeats):
        tokens = tokenizer.tokenize(body) or []
    encode = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        request_keys(tokens, 16)
    keys = (time.perf_counter() - start) / repeats
    return {
        "benchmark": "tokenize",
        "body_kb": size // 1000,
        "tokens": len(tokens),
        "template_encode_ms": round(encode * 1e3, 2),
        "block_keys_ms": round(keys * 1e3, 3),
    }


LOOP_CONFIG = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-producer
  parameters: {{tokenizer: {{path: "{path}"}}}}
- type: prefix-cache-scorer
  parameters: {{prefixMatchInfoProducerName: precise-prefix-cache-producer}}
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins: [{{pluginRef: prefix-cache-scorer}}, {{pluginRef: max-score-picker}}]
"""


def measure_loop_latency(
    tokenizer_dir: str | Path, big_kb: int = 100, small_requests: int = 100, senders: int = 2, host: str = "127.0.0.1"
) -> list[dict]:
    """p50/p90 latency of a small request's pick through the picker's gRPC server (an in-process picker with a
    precise prefix config tokenizing with `tokenizer_dir`, one simulated endpoint whose events index is trusted),
    idle and while `senders` clients keep sending distinct chat requests of `big_kb` KB (each tokenized afresh)."""
    import asyncio
    import tempfile
    import threading

    import grpc
    import orjson
    import yaml
    from envoy.config.core.v3 import base_pb2
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

    from picker.kvcache.events import AllBlocksCleared
    from picker.scheduling.precise_prefix import PrecisePrefixCacheProducer
    from picker.server.app import Picker, PickerOptions
    from poolgate.api.builders import pod, pool
    from poolgate.api.contract import POOL_METADATA_KEY
    from simulator.config import ServerConfig
    from simulator.server import SimulatedServers

    headers = base_pb2.HeaderMap(
        headers=[
            base_pb2.HeaderValue(key=k, raw_value=v.encode())
            for k, v in {":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json"}.items()
        ]
    )

    def pick_seconds(stub: ext_proc_grpc.ExternalProcessorStub, body: bytes) -> float:
        messages = [
            ext_proc.ProcessingRequest(request_headers=ext_proc.HttpHeaders(headers=headers)),
            ext_proc.ProcessingRequest(request_body=ext_proc.HttpBody(body=body, end_of_stream=True)),
        ]
        start = time.perf_counter()
        call = stub.Process(iter(messages), metadata=((POOL_METADATA_KEY, "default/pool"),))
        reply = next(call)
        elapsed = time.perf_counter() - start
        call.cancel()
        assert reply.HasField("request_headers"), reply
        return elapsed

    def chat(text: str) -> bytes:
        return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})

    rng = random.Random(0)
    filler = " ".join(rng.choice(_WORDS) for _ in range(big_kb * 250))[: big_kb * 1000]

    async def run() -> list[dict]:
        async with SimulatedServers([f"{host}:0"], ServerConfig().without_latency()) as servers:
            with tempfile.TemporaryDirectory() as directory:
                objects = Path(directory) / "objects.yaml"
                objects.write_text(yaml.safe_dump_all([pool(ports=(servers[0].port,), picker=None), pod("p0", host)]))
                options = PickerOptions(
                    host=host,
                    grpc_port=0,
                    health_port=0,
                    metrics_port=0,
                    objects_file=str(objects),
                    config_text=LOOP_CONFIG.format(path=tokenizer_dir),
                    secure_serving=False,
                )
                picker = Picker(options)
                await picker.start()
                try:
                    scheduler = picker.pools.pools["default/pool"].scheduler
                    assert scheduler is not None
                    producer = next(p for p in scheduler.profile.plugins() if isinstance(p, PrecisePrefixCacheProducer))
                    key = f"{host}:{servers[0].port}"
                    stored = BlockStored([1], None, list(range(16)), 16)
                    producer.index.ingest(key, EventBatch("kv@p0@m", 0, 0.0, [AllBlocksCleared(), stored]))
                    return await asyncio.to_thread(drive, f"{host}:{picker.ports()['grpc']}")
                finally:
                    await picker.stop()

    def drive(target: str) -> list[dict]:
        with grpc.insecure_channel(target) as channel:
            stub = ext_proc_grpc.ExternalProcessorStub(channel)
            return [measure_phase(stub, 0), measure_phase(stub, senders)]

    def measure_phase(stub: ext_proc_grpc.ExternalProcessorStub, big_senders: int) -> dict:
        stop = threading.Event()
        big_picks: list[float] = []

        def send_big(sender: int) -> None:
            count = 0
            while not stop.is_set():
                count += 1
                big_picks.append(pick_seconds(stub, chat(f"{sender} {count} {filler}")))

        threads = [threading.Thread(target=send_big, args=(n,)) for n in range(big_senders)]
        for thread in threads:
            thread.start()
        time.sleep(0.5 if threads else 0)
        small = chat("what is the capital of the block cache?")
        latencies = []
        for _ in range(small_requests):
            latencies.append(pick_seconds(stub, small))
            time.sleep(0.01)
        stop.set()
        for thread in threads:
            thread.join()
        latencies.sort()
        big_picks.sort()
        return {
            "benchmark": "event-loop",
            "load": f"{big_senders} x {big_kb} KB chat" if big_senders else "idle",
            "small_p50_ms": round(latencies[len(latencies) // 2] * 1e3, 2),
            "small_p90_ms": round(latencies[len(latencies) * 9 // 10] * 1e3, 2),
            "big_requests": len(big_picks),
            "big_p50_ms": round(big_picks[len(big_picks) // 2] * 1e3, 1) if big_picks else 0.0,
        }

    return asyncio.run(run())
