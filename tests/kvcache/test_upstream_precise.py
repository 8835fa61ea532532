"""Upstream's precise prefix-cache config (llm-d router v0.10) as published: its `token-producer` with the `vllm`
backend tokenizes through a real `/tokenize` server, the precise producer matches those tokens against the engines'
KV events, and the picker's server does that tokenizing on worker threads, not on its event loop."""

from __future__ import annotations

import asyncio
import random
import threading
from array import array

import grpc
import orjson
import yaml
import zmq

from picker.kvcache.events import BlockStored, EventBatch
from picker.kvcache.tokenizer import EngineTokenizer, LocalTokenizer, TokenizeQueue
from picker.pool.state import EndpointSpec, PoolState
from picker.scheduling import Scheduler, builtin_config, load_config
from picker.scheduling.precise_prefix import PrecisePrefixCacheProducer
from picker.scheduling.scorers import PrefixCacheScorer
from picker.scheduling.tokens import EstimateBackend
from picker.server.app import Picker, PickerOptions
from poolgate.api.builders import pod, pool
from simulator.config import ServerConfig
from simulator.server import SimulatedServers
from tests.kvcache.test_precise_producer import publish_until_seen, request
from tests.kvcache.test_subscriber import free_port
from tests.kvcache.test_tokenizer import TEXT, engine, model_dir  # noqa: F401  (fixtures)
from tests.support.extproc import ExtProcStream, header_values, request_body, request_headers
from tests.support.upstream import UPSTREAM_CONFIGS

BLOCK = 16
PRECISE_CONFIG = UPSTREAM_CONFIGS / "llm-d-router-v0.10" / "epp-precise-prefix-cache-config.yaml"


def upstream_precise_config(tokenize_url: str, events_port: int | None = None) -> str:
    """The published config with its `vllm.url` (and, when given, the engines' KV-event port) set for this test."""
    config = yaml.safe_load(PRECISE_CONFIG.read_text())
    for entry in config["plugins"]:
        if entry["type"] == "token-producer":
            entry["parameters"]["modelName"] = "tiny"
            entry["parameters"]["vllm"]["url"] = tokenize_url
        if entry["type"] == "precise-prefix-cache-producer" and events_port is not None:
            entry["parameters"]["kvEventsConfig"] = {"podDiscoveryConfig": {"socketPort": events_port}}
    return yaml.safe_dump(config)


def precise_producer(scheduler: Scheduler) -> PrecisePrefixCacheProducer:
    scorer = next(s for s, _ in scheduler.profile.scorers if isinstance(s, PrefixCacheScorer))
    assert isinstance(scorer.producer, PrecisePrefixCacheProducer)
    return scorer.producer


def test_the_vllm_token_producer_tokenizes_like_the_engine_and_falls_back_to_estimates(engine, model_dir):  # noqa: F811
    config = load_config(upstream_precise_config(engine.url), random.Random(0))
    pool = PoolState()
    pool.upsert(EndpointSpec("127.0.0.2", 8000))
    producer = precise_producer(Scheduler(pool, config.profile()))
    body = {"model": "ignored", "messages": [{"role": "user", "content": TEXT[:300]}]}
    expected = LocalTokenizer(model_dir).tokenize(body)
    assert expected is not None
    assert producer.approximate.tokens.backend.tokenize(request(body)).ids == array("I", expected).tobytes()
    assert producer.tokenizer is producer.approximate.tokens.request_tokenizer  # one engine tokenizer for both
    assert engine.seen[-1]["model"] == "tiny"  # the config's modelName, not the request's model

    down = load_config(upstream_precise_config(f"http://127.0.0.1:{free_port()}"), random.Random(0))
    backend = precise_producer(Scheduler(pool, down.profile())).approximate.tokens.backend
    assert backend.tokenize(request(body)).ids == EstimateBackend().tokenize(request(body)).ids


def test_the_upstream_precise_config_routes_by_the_engines_events(engine, model_dir):  # noqa: F811
    port = free_port()
    context = zmq.Context()
    publishers = {}
    for address in ("127.0.0.2", "127.0.0.3"):
        publisher = publishers[f"{address}:8000"] = context.socket(zmq.PUB)
        publisher.setsockopt(zmq.LINGER, 0)
        publisher.bind(f"tcp://{address}:{port}")
    pool = PoolState()
    for address in ("127.0.0.2", "127.0.0.3"):
        pool.upsert(EndpointSpec(address, 8000))
    config = load_config(upstream_precise_config(engine.url, port), random.Random(0))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation)
    producer = precise_producer(scheduler)
    try:
        body = {"prompt": TEXT[:600]}
        tokens = LocalTokenizer(model_dir).tokenize(body)
        assert tokens is not None and len(tokens) > 4 * BLOCK
        scheduler.schedule(request({"prompt": "warm up"}), now=0.0)  # the first cycle subscribes to the pool
        for key, publisher in publishers.items():  # both trusted; only .3 holds the prompt's first 4 blocks
            stored = BlockStored([1, 2, 3, 4], None, list(tokens[: 4 * BLOCK]), BLOCK)
            if key == "127.0.0.2:8000":
                stored = BlockStored([1], None, list(range(BLOCK)), BLOCK)
            publish_until_seen(publisher, producer, key, stored)
        for now in (10.0, 20.0, 30.0):
            assert scheduler.schedule(request(body), now=now).primary == "127.0.0.3:8000"
        assert producer.predicted_cached_tokens(request(body), "127.0.0.3:8000", now=40.0) == 4 * BLOCK
        assert producer.predicted_cached_tokens(request(body), "127.0.0.2:8000", now=40.0) == 0
    finally:
        scheduler.close()
        for publisher in publishers.values():
            publisher.close(0)
        context.term()


async def test_the_picker_tokenizes_on_worker_threads_and_its_cycle_reads_the_result(
    engine,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    calls: list[tuple[str, int]] = []  # (thread, requests the engine had answered before the call)
    tokenize = EngineTokenizer.tokenize

    def recording_tokenize(self, body):
        calls.append((threading.current_thread().name, len(engine.seen)))
        return tokenize(self, body)

    monkeypatch.setattr(EngineTokenizer, "tokenize", recording_tokenize)
    async with SimulatedServers(["127.0.0.42:0"], ServerConfig().without_latency()) as servers:
        objects = tmp_path / "objects.yaml"
        objects.write_text(yaml.safe_dump_all([pool(ports=(servers[0].port,), picker=None), pod("p0", "127.0.0.42")]))
        picker = Picker(
            PickerOptions(
                host="127.0.0.1",
                grpc_port=0,
                health_port=0,
                metrics_port=0,
                objects_file=str(objects),
                config_text=upstream_precise_config(engine.url),
                secure_serving=False,
            )
        )
        await picker.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{picker.ports()['grpc']}") as channel:
                stream = ExtProcStream(channel, "default/pool")
                prompt = TEXT * 30  # about 100 KB
                await stream.send(request_headers(), request_body(orjson.dumps({"model": "m", "prompt": prompt})))
                reply = (await stream.read(2))[0]
        finally:
            await picker.stop()
    destination = header_values(reply.request_headers.response.header_mutation)["x-gateway-destination-endpoint"]
    assert destination == f"127.0.0.42:{servers[0].port}"
    assert len(engine.seen) == 1 and engine.seen[0]["prompt"] == prompt  # tokenized once, by the engine
    first_thread, answered_before = calls[0]
    assert first_thread.startswith("tokenize") and answered_before == 0  # ahead of the cycle, on a worker
    assert all(answered == 1 for _, answered in calls[1:])  # the cycle (event loop) found it in the cache
    assert any(not thread.startswith("tokenize") for thread, _ in calls[1:])


async def test_the_tokenize_queue_runs_work_on_its_threads_and_bounds_what_it_holds():
    queue = TokenizeQueue(workers=1, depth=2)
    release = threading.Event()
    threads: list[str] = []
    running: list[int] = []

    def work() -> None:
        threads.append(threading.current_thread().name)
        running.append(1)
        release.wait(10)

    jobs = [asyncio.ensure_future(queue.run(work)) for _ in range(3)]
    for _ in range(200):
        if running:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert queue.full and len(threads) == 1  # two jobs hold both slots (one runs); the third waits for a slot
    release.set()
    await asyncio.gather(*jobs)
    assert len(threads) == 3 and all(name.startswith("tokenize") for name in threads)

    def failing() -> None:
        raise ValueError("bad template")

    await queue.run(failing)  # logged, not raised: the cycle tokenizes by itself
    assert not queue.full


def test_engine_tokenizing_always_goes_off_the_event_loop_and_local_tokenizing_from_4_kb(engine, model_dir):  # noqa: F811
    """A tokenizer behind a network call is never called on the event loop, whatever the body's size; a local one
    only for bodies worth a worker thread; a profile without a tokenizer prepares nothing."""
    pool = PoolState()
    pool.upsert(EndpointSpec("127.0.0.2", 8000))
    by_engine = Scheduler(pool, load_config(upstream_precise_config(engine.url), random.Random(0)).profile())
    assert by_engine.prepares and by_engine.preparation_threshold() == 0
    local = f"""
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-producer
  parameters: {{tokenizer: {{path: "{model_dir}"}}}}
- type: prefix-cache-scorer
  parameters: {{prefixMatchInfoProducerName: precise-prefix-cache-producer}}
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
  - pluginRef: max-score-picker
"""
    by_file = Scheduler(pool, load_config(local, random.Random(0)).profile())
    assert by_file.prepares and by_file.preparation_threshold() == LocalTokenizer.off_loop_min_bytes == 4096
    estimate = Scheduler(
        pool, load_config(PRECISE_CONFIG.with_name("epp-config.yaml").read_text(), random.Random(0)).profile()
    )
    assert not estimate.prepares


def test_engine_tokenizing_for_the_event_index_is_prepared_only_while_an_engines_index_is_trusted():
    """poolgate-default has the engines tokenize (a network call) only requests matched against a trusted event
    index: while none is trusted there is nothing to prepare, so no request pays a worker thread's round trip."""
    pool = PoolState()
    pool.upsert(EndpointSpec("127.0.0.2", 8000))
    scheduler = Scheduler(pool, builtin_config("poolgate-default", random.Random(0)).profile())
    try:
        producer = next(p for p in scheduler.profile.plugins() if isinstance(p, PrecisePrefixCacheProducer))
        assert producer.tokenizer is None and scheduler.prepares
        assert scheduler.preparation_threshold() is None
        producer.index.ingest("127.0.0.2:8000", EventBatch("kv@pod-0@tiny", 0, 0.0, []))  # a stream from its start
        assert scheduler.preparation_threshold() == 0
        producer.index.mark_unreliable("127.0.0.2:8000", "missed messages")
        assert scheduler.preparation_threshold() is None
    finally:
        scheduler.close()
