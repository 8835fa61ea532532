"""`precise-prefix-cache-producer` end to end on loopback: real ZMQ publishers per endpoint, a real tokenizer, the
scheduler picking by the events, and the approximate index for endpoints whose events cannot be trusted."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import zmq

from picker.kvcache.events import BlockStored, EventBatch, encode_message
from picker.kvcache.tokenizer import LocalTokenizer
from picker.pool.state import EndpointSpec, PoolState
from picker.scheduling.framework import Profile
from picker.scheduling.pickers import MaxScorePicker
from picker.scheduling.precise_prefix import PrecisePrefixCacheProducer
from picker.scheduling.registry import BuildContext, ConfigError, plugin_class
from picker.scheduling.request import PromptInput, SchedulingRequest
from picker.scheduling.scheduler import Scheduler
from picker.scheduling.scorers import PrefixCacheScorer
from tests.kvcache.test_subscriber import eventually, free_port
from tests.kvcache.test_tokenizer import TEXT, model_dir  # noqa: F401  (the tokenizer fixture)

BLOCK = 16


def producer_from(parameters: dict, name: str = "precise") -> PrecisePrefixCacheProducer:
    cls = plugin_class("precise-prefix-cache-producer", name)
    return cls.create(name, cls.Parameters.model_validate(parameters), BuildContext(random.Random(0)))


def test_upstream_parameters_are_accepted_and_bad_ones_name_the_field():
    producer = producer_from(
        {
            "tokenProcessorConfig": {"blockSize": 64, "hashSeed": "42"},
            "indexerConfig": {"kvBlockIndexConfig": {"enableMetrics": True}},
            "kvEventsConfig": {
                "topicFilter": "kv@",
                "concurrency": 8,
                "discoverPods": True,
                "podDiscoveryConfig": {"socketPort": 5556, "replaySocketPort": 5559},
            },
            "speculativeIndexing": True,
            "speculativeTTL": "500ms",
        }
    )
    assert (producer.events_port, producer.replay_port, producer.index.speculative_ttl) == (5556, 5559, 0.5)
    assert producer_from({}).index.speculative_ttl == 0.0  # speculation off by default, as upstream
    with pytest.raises(Exception, match="socketPort"):
        producer_from({"kvEventsConfig": {"podDiscoveryConfig": {"socketPort": 0}}})
    assert issubclass(ConfigError, ValueError)


@pytest.fixture
def fleet(model_dir) -> Iterator[tuple[Scheduler, PrecisePrefixCacheProducer, dict[str, zmq.Socket]]]:  # noqa: F811
    """Two endpoints (127.0.0.2 and .3) whose engines publish on one port; a scheduler scoring only prefixes."""
    port = free_port()
    context = zmq.Context()
    publishers = {}
    for address in ("127.0.0.2", "127.0.0.3"):
        publisher = context.socket(zmq.PUB)
        publisher.setsockopt(zmq.LINGER, 0)
        publisher.bind(f"tcp://{address}:{port}")
        publishers[f"{address}:8000"] = publisher
    producer = producer_from(
        {
            "kvEventsConfig": {"podDiscoveryConfig": {"socketPort": port}},
            "speculativeIndexing": True,
            "tokenizer": {"path": str(model_dir)},
        }
    )
    pool = PoolState()
    for address in ("127.0.0.2", "127.0.0.3"):
        pool.upsert(EndpointSpec(address, 8000))
    scorer = PrefixCacheScorer("prefix", producer=producer)
    profile = Profile("precise", [], [(scorer, 1.0)], MaxScorePicker("picker", rng=random.Random(0)))
    scheduler = Scheduler(pool, profile)
    yield scheduler, producer, publishers
    subscriber = producer.subscriber
    scheduler.close()  # a retired scheduler stops its producer's subscription thread
    assert subscriber is None or not subscriber.running
    for publisher in publishers.values():
        publisher.close(0)
    context.term()


def request(body: dict) -> SchedulingRequest:
    return SchedulingRequest("tiny", PromptInput.from_body(body), body=body)


def publish_until_seen(publisher: zmq.Socket, producer: PrecisePrefixCacheProducer, key: str, event: object) -> None:
    frames = encode_message(EventBatch("kv@pod@tiny", 0, 0.0, [event]))  # type: ignore[list-item]
    eventually(lambda: publisher.send_multipart(frames) or producer.index.reliable(key))


def test_requests_go_where_the_events_say_the_prefix_is_cached(fleet, model_dir):  # noqa: F811
    scheduler, producer, publishers = fleet
    body = {"prompt": TEXT[:600]}
    tokens = LocalTokenizer(model_dir).tokenize(body)
    assert tokens is not None and len(tokens) > 4 * BLOCK
    cached = list(tokens[: 4 * BLOCK])
    scheduler.schedule(request({"prompt": "warm up"}), now=0.0)  # the first cycle subscribes to the pool
    hashes = list(range(100, 104))
    publish_until_seen(
        publishers["127.0.0.3:8000"], producer, "127.0.0.3:8000", BlockStored(hashes, None, cached, BLOCK)
    )
    assert not producer.index.reliable("127.0.0.2:8000")  # no events from .2: approximate there
    for now in (10.0, 20.0, 30.0):
        decision = scheduler.schedule(request(body), now=now)
        assert decision.primary == "127.0.0.3:8000"
    assert producer.predicted_cached_tokens(request(body), "127.0.0.3:8000", now=40.0) == 4 * BLOCK
    assert producer.predicted_cached_tokens(request(body), "127.0.0.2:8000", now=40.0) is None


def test_speculation_holds_a_pick_until_its_first_token_then_for_the_ttl(fleet, model_dir):  # noqa: F811
    scheduler, producer, publishers = fleet
    scheduler.schedule(request({"prompt": "warm up"}), now=0.0)
    for key, publisher in publishers.items():
        publish_until_seen(publisher, producer, key, BlockStored([1], None, list(range(BLOCK)), BLOCK))
    body = {"prompt": TEXT[:900]}
    decisions = [scheduler.schedule(request(body), now=100.0)]
    first = decisions[0].primary
    other = next(key for key in publishers if key != first)
    tokens = LocalTokenizer(model_dir).tokenize(body)
    assert tokens is not None
    keys = producer.request_keys(request(body), tokens, BLOCK)
    assert producer.index.matched_blocks(keys, [first, other], 101.0) == {first: len(keys), other: 0}
    decisions += [scheduler.schedule(request(body), now=100.0 + t) for t in (0.5, 1.0, 1.5)]
    assert all(decision.primary == first for decision in decisions)
    assert producer.predicted_cached_tokens(request(body), first, now=101.0) == 0  # events only: not confirmed
    # queued in the engine for longer than the TTL (2 s): no events yet, so the credit holds until the first token
    assert producer.index.matched_blocks(keys, [first, other], 110.0) == {first: len(keys), other: 0}
    scheduler.on_first_token(decisions[0], 110.0)  # computed: its events are on their way, given the TTL
    assert producer.index.matched_blocks(keys, [first, other], 111.9) == {first: len(keys), other: 0}
    assert producer.index.matched_blocks(keys, [first, other], 112.0) == {first: 0, other: 0}
    # a request that ends without a first token (refused, the client went away) may never have computed its prompt
    failed = scheduler.schedule(request(body), now=120.0)
    assert producer.index.matched_blocks(keys, [failed.primary], 120.5) == {failed.primary: len(keys)}
    scheduler.on_complete(failed, 121.0)
    assert producer.index.matched_blocks(keys, [first, other], 121.0) == {first: 0, other: 0}
