"""End-to-end overhead of the ext_proc service, measured in-process: a grpc.aio client plays Envoy against the real
server over loopback, one stream per request, the whole protocol (request headers + body with the echo, response
headers + one response body chunk).

`measure_extproc(...)` returns one row per concurrency: requests/s and the p50/p99 of one request's ext_proc time
(from opening the stream to the last reply). `response_chunks` > 1 streams the response as that many SSE chunks (a
token stream), which shows the cost of each response chunk. Client and server share this process and its one event
loop, so the numbers are a lower bound of what a picker does when Envoy is the client; pool metrics are fed directly
(no scraping).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Callable, Iterable

import grpc
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

from picker.discovery.view import PickerView, PoolView
from picker.pool.state import EndpointSpec
from picker.server.exchange import ExchangeSettings
from picker.server.metrics import PickerMetrics
from picker.server.pools import PoolRegistry, PoolSettings, ProfileSource
from picker.server.service import ExternalProcessor, Listen, PickerServer

Progress = Callable[[str], None]
POOL = "bench/pool"


def _headers(mode: int) -> ext_proc.ProcessingRequest:
    headers = {":method": "POST", ":path": "/v1/chat/completions", ":authority": "gateway",
               "content-type": "application/json"}
    message = ext_proc.ProcessingRequest(request_headers=ext_proc.HttpHeaders(headers=base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()])))
    message.protocol_config.request_body_mode = mode
    message.protocol_config.response_body_mode = 4
    return message


def _body(rng: random.Random, size: int) -> bytes:
    words = "the quick brown fox jumps over a lazy dog while tokens stream by".split()
    text = " ".join(rng.choice(words) for _ in range(max(1, size // 5)))
    return orjson.dumps({"model": "llama", "stream": True, "messages": [
        {"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}]})


_RESPONSE_HEADERS = ext_proc.ProcessingRequest(response_headers=ext_proc.HttpHeaders(headers=base_pb2.HeaderMap(
    headers=[base_pb2.HeaderValue(key=":status", raw_value=b"200"),
             base_pb2.HeaderValue(key="content-type", raw_value=b"text/event-stream")])))
_TOKEN_CHUNK = ext_proc.ProcessingRequest(response_body=ext_proc.HttpBody(
    body=b'data: {"id":"cmpl-1","model":"llama","choices":[{"index":0,"text":" token"}]}\n\n'))
_RESPONSE_BODY = ext_proc.ProcessingRequest(response_body=ext_proc.HttpBody(
    body=b'data: {"model":"llama","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":20}}\n\n'
         b"data: [DONE]\n\n", end_of_stream=True))


async def _one_request(stub, headers: ext_proc.ProcessingRequest, body: bytes, duplex: bool,
                       response_chunks: int) -> float:
    started = time.perf_counter()
    call = stub.Process(metadata=(("x-poolgate-pool", POOL),))
    await call.write(headers)
    if not duplex:
        await call.read()
    await call.write(ext_proc.ProcessingRequest(request_body=ext_proc.HttpBody(body=body, end_of_stream=True)))
    await call.read()
    if duplex:
        await call.read()
    await call.write(_RESPONSE_HEADERS)
    await call.read()
    for _ in range(response_chunks - 1):
        await call.write(_TOKEN_CHUNK)
        await call.read()
    await call.write(_RESPONSE_BODY)
    await call.read()
    await call.done_writing()
    await call.read()   # EOF
    return time.perf_counter() - started


async def _measure(endpoints: int, profile: str, requests: int, concurrencies: Iterable[int], body_bytes: int,
                   duplex: bool, response_chunks: int, seed: int, say: Progress) -> list[dict]:
    rng = random.Random(seed)
    registry = CollectorRegistry()
    pools = PoolRegistry(PoolSettings(ProfileSource(None, profile), scrape_interval=None), registry)
    specs = tuple(EndpointSpec(f"10.3.{i // 250}.{i % 250}", 8000, f"pod-{i}") for i in range(endpoints))
    await pools.apply(PickerView({POOL: PoolView(POOL, True, specs)}))
    state = pools.pools[POOL].state

    def refresh_metrics() -> None:
        now = state.clock()
        for endpoint in state.endpoints():
            state.apply_samples(endpoint.key, [
                Sample("vllm:num_requests_waiting", {}, rng.randint(0, 4), None, None),
                Sample("vllm:num_requests_running", {}, rng.randint(0, 32), None, None),
                Sample("vllm:kv_cache_usage_perc", {}, rng.random() * 0.7, None, None)], now)

    processor = ExternalProcessor(pools, PickerMetrics(registry), ExchangeSettings())
    server = PickerServer(processor, Listen("127.0.0.1", 0, 0))
    await server.start()
    await server.set_ready(True)
    headers = _headers(4 if duplex else 2)
    bodies = [_body(rng, body_bytes) for _ in range(64)]
    rows = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = ext_proc_grpc.ExternalProcessorStub(channel)
            refresh_metrics()
            for _ in range(200):   # warm up
                await _one_request(stub, headers, bodies[0], duplex, response_chunks)
            for concurrency in concurrencies:
                say(f"ext_proc overhead: {requests} requests at concurrency {concurrency}")
                latencies: list[float] = []
                remaining = requests

                async def worker() -> None:
                    nonlocal remaining
                    while remaining > 0:
                        remaining -= 1
                        if remaining % 100 == 0:
                            refresh_metrics()
                        latencies.append(await _one_request(stub, headers, bodies[remaining % len(bodies)], duplex,
                                                            response_chunks))

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.perf_counter() - started
                latencies.sort()
                rows.append({"benchmark": "extproc-overhead", "mode": "full-duplex" if duplex else "buffered",
                             "profile": profile, "endpoints": endpoints, "body_bytes": len(bodies[0]),
                             "response_chunks": response_chunks,
                             "concurrency": concurrency, "requests": len(latencies),
                             "requests_per_s": round(len(latencies) / elapsed),
                             "p50_ms": round(latencies[len(latencies) // 2] * 1e3, 3),
                             "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, 3)})
    finally:
        await server.stop(0)
        await pools.close()
    return rows


def measure_extproc(endpoints: int = 10, profile: str = "poolgate-default", requests: int = 2000,
                    concurrencies: Iterable[int] = (1, 8), body_bytes: int = 1000, duplex: bool = True,
                    response_chunks: int = 1, seed: int = 0, progress: Progress | None = None) -> list[dict]:
    """Run the in-process ext_proc benchmark (see the module docstring) and return its rows."""
    if response_chunks < 1:
        raise ValueError("response_chunks must be at least 1")
    return asyncio.run(_measure(endpoints, profile, requests, tuple(concurrencies), body_bytes, duplex,
                                response_chunks, seed, progress or (lambda message: None)))

