"""The load book: a replica books what its peer replicas announce (picks, first tokens, ends), whatever the order,
repeats and losses of the transport, and forgets what is not ended within the TTL."""

import random

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import PromptInput, Scheduler, SchedulingRequest, builtin_config
from picker.scheduling.loadbook import ENDED, FIRST_TOKEN, PICKED, LoadBook

A, B, C = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"


def idle_pool():
    pool = PoolState(clock=lambda: 0.0)
    for key in (A, B, C):
        address, _, port = key.partition(":")
        pool.upsert(EndpointSpec(address, int(port)))
        samples = [
            Sample("vllm:num_requests_waiting", {}, 0, None, None),
            Sample("vllm:num_requests_running", {}, 0, None, None),
            Sample("vllm:kv_cache_usage_perc", {}, 0.0, None, None),
        ]
        pool.apply_samples(key, samples, now=0.0)
    return pool


def replica(seed=0):
    """One picker replica of a 3-endpoint pool: its scheduler (poolgate-default) and load book."""
    pool = idle_pool()
    config = builtin_config("poolgate-default", random.Random(seed))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation, fallbacks=2)
    return scheduler, LoadBook(scheduler, ttl=10.0)


def backlog(scheduler, key, now):
    scorer = next(s for s, _ in scheduler.profile.scorers if s.type_name == "predicted-ttft-scorer")
    entry = scorer.backlogs.get(key)
    return 0.0 if entry is None else entry.at(now)


def request(tokens=1000, tag=0):
    return SchedulingRequest("m", PromptInput(bytes([tag]) * (4 * tokens)))


def test_a_peers_request_counts_as_load_until_it_ends_but_not_among_the_own_in_flight():
    sender, _ = replica()
    events = []
    sender.outbox = events.append
    decision = sender.schedule(request(), 0.0)
    receiver, book = replica(seed=1)
    book.apply("peer-1", events, 0.001)
    (kind, number, endpoint, tokens, uncached) = events[0]
    assert (kind, endpoint, tokens, uncached) == (PICKED, decision.primary, 1000, 1000.0)
    booked = receiver.pool.get(endpoint)
    assert (booked.unreflected, booked.inflight) == (1, 0)
    assert backlog(receiver, endpoint, 0.001) == pytest.approx(0.2)  # 1,000 uncached tokens x 0.2 ms
    assert book.outstanding(0.001) == {endpoint: (1, 1)}

    sender.on_first_token(decision, 0.25)
    sender.on_complete(decision, 2.0)
    assert events[1:] == [(FIRST_TOKEN, number), (ENDED, number)]
    book.apply("peer-1", events[1:2], 0.251)
    assert backlog(receiver, endpoint, 0.251) == 0.0 and book.outstanding(0.251) == {endpoint: (1, 0)}
    book.apply("peer-1", events[2:], 2.001)
    assert booked.unreflected == 0 and len(book) == 0


def test_a_replica_steers_around_the_requests_its_peer_just_sent():
    """Before any scrape shows them, the peer's two requests make their endpoints score below the idle one."""
    first, _ = replica(seed=0)
    second, book = replica(seed=1)
    first.outbox = lambda event: book.apply("first", [event], 0.0)
    busy = {first.schedule(request(tag=i), 0.0).primary for i in range(2)}
    (idle,) = {A, B, C} - busy
    scores = second.explain(request(tag=9), 0.001)
    assert all(scores[idle] > scores[key] for key in busy)
    assert second.schedule(request(tag=9), 0.001).primary == idle
    unshared, _ = replica(seed=1)
    assert len(set(unshared.explain(request(tag=9), 0.001).values())) == 1  # alone, it sees three idle endpoints


def test_a_repeated_pick_is_ignored_and_one_naming_another_endpoint_moves_the_request():
    receiver, book = replica()
    book.apply("peer", [(PICKED, 7, A, 100, 100.0), (PICKED, 7, A, 100, 100.0)], 0.0)
    assert receiver.pool.get(A).unreflected == 1 and len(book) == 1
    book.apply("peer", [(PICKED, 7, B, 100, 100.0)], 0.1)  # a fallback served it
    assert (receiver.pool.get(A).unreflected, receiver.pool.get(B).unreflected) == (0, 1)
    book.apply("other-peer", [(PICKED, 7, A, 100, 100.0)], 0.1)  # numbers are per peer
    assert len(book) == 2


def test_events_that_overtake_their_pick_are_remembered():
    receiver, book = replica()
    book.apply("peer", [(ENDED, 1), (FIRST_TOKEN, 2)], 0.0)
    book.apply("peer", [(PICKED, 1, A, 500, 500.0), (PICKED, 2, B, 500, 500.0)], 0.01)
    assert receiver.pool.get(A).unreflected == 0  # ended before it arrived: nothing booked
    assert receiver.pool.get(B).unreflected == 1 and backlog(receiver, B, 0.01) == 0.0  # prefill already done
    assert book.outstanding(0.01) == {B: (1, 0)}


def test_requests_not_ended_within_the_ttl_are_forgotten():
    receiver, book = replica()
    book.apply("dead-peer", [(PICKED, 1, A, 100, 100.0)], 0.0)
    book.apply("dead-peer", [(PICKED, 2, A, 100, 100.0)], 5.0)
    assert book.outstanding(9.9) == {A: (2, 2)}
    assert book.outstanding(10.0) == {A: (1, 1)}
    book.expire(15.0)
    assert len(book) == 0 and receiver.pool.get(A).unreflected == 0
    book.apply("dead-peer", [(ENDED, 2)], 15.1)  # a late end books nothing
    assert len(book) == 0 and receiver.pool.get(A).unreflected == 0


def test_malformed_events_are_counted_and_skipped():
    receiver, book = replica()
    bad = [("x", 1), (PICKED, "1", A, 1, 1), (PICKED, 2, A, 10, 20), (PICKED, 3, A), (ENDED,), (PICKED, 4, 5, 1, 1)]
    book.apply("peer", [*bad, (PICKED, 5, C, 10, 10)], 0.0)
    assert book.rejected == len(bad) and book.outstanding(0.0) == {C: (1, 1)}
    with pytest.raises(ValueError, match="TTL"):
        LoadBook(receiver, ttl=0)
