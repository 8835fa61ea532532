"""The scheduler: outcomes, shedding by the saturation rule, fallbacks and the request lifecycle."""

import random

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import (
    Outcome,
    PromptInput,
    Scheduler,
    SchedulingRequest,
    UtilizationDetector,
    builtin_config,
    encode_session_token,
    load_config,
)


def vllm(waiting, kv):
    return [
        Sample("vllm:num_requests_waiting", {}, waiting, None, None),
        Sample("vllm:num_requests_running", {}, 0, None, None),
        Sample("vllm:kv_cache_usage_perc", {}, kv, None, None),
    ]


def make_pool(*metrics, now=0.0):
    pool = PoolState(clock=lambda: now)
    for i, m in enumerate(metrics, start=1):
        spec = EndpointSpec(f"10.0.0.{i}", 8000)
        pool.upsert(spec)
        if m is not None:
            pool.apply_samples(spec.key, vllm(*m), now=now)
    return pool


def scheduler(pool, name="llmd-default", **kwargs):
    config = builtin_config(name, random.Random(0))
    return Scheduler(pool, config.profile(), saturation=config.saturation, **kwargs)


def test_saturation_is_the_mean_of_per_endpoint_roofline_scores():
    detector = UtilizationDetector()
    pool = make_pool((5, 0.2), (0, 0.4), None)  # 1.0, 0.5, never scraped -> 1.0
    assert detector.saturation(pool.endpoints(), now=0.1) == pytest.approx(2.5 / 3)
    pool.apply_samples("10.0.0.3:8000", vllm(1, 0.8), now=0.0)  # max(0.2, 1.0) = 1.0
    assert detector.saturation(pool.endpoints(), now=0.1) == pytest.approx(2.5 / 3)
    assert detector.saturation(pool.endpoints(), now=0.25) == pytest.approx(1.0)  # all stale (> 200 ms)
    assert detector.saturation([], now=0.0) == 1.0


def test_sheddable_requests_are_shed_only_when_saturated():
    pool = make_pool((10, 0.9), (6, 0.1))  # 2.0 and 1.2 -> 1.6
    s = scheduler(pool)
    shed = s.schedule(SchedulingRequest("m", priority=-1), 0.05)
    assert shed.outcome is Outcome.SHED and shed.endpoints == () and shed.ticket is None
    assert s.schedule(SchedulingRequest("m", priority=0), 0.05).outcome is Outcome.PICKED
    assert s.schedule(SchedulingRequest("m", priority=5), 0.05).outcome is Outcome.PICKED
    pool.apply_samples("10.0.0.1:8000", vllm(0, 0.0), now=0.05)
    pool.apply_samples("10.0.0.2:8000", vllm(4, 0.0), now=0.05)  # 0 and 0.8 -> 0.4
    assert s.schedule(SchedulingRequest("m", priority=-1), 0.05).outcome is Outcome.PICKED


def test_no_endpoint_outcomes():
    empty = scheduler(PoolState())
    assert empty.schedule(SchedulingRequest("m"), 0.0).outcome is Outcome.NO_ENDPOINT
    s = scheduler(make_pool((0, 0.0), (0, 0.0)))
    decision = s.schedule(SchedulingRequest("m", subset=("10.9.9.9:8000",)), 0.0)
    assert decision.outcome is Outcome.NO_ENDPOINT and "subset-filter" in decision.reason
    assert s.schedule(SchedulingRequest("m", subset=("10.0.0.2",)), 0.0).endpoints == ("10.0.0.2:8000",)


def test_primary_and_configurable_fallbacks():
    pool = make_pool((0, 0.0), (1, 0.0), (2, 0.0), (3, 0.0))
    assert len(scheduler(pool).schedule(SchedulingRequest("m"), 0.0).endpoints) == 1  # llmd-default: as upstream
    assert len(scheduler(pool, name="poolgate-default").schedule(SchedulingRequest("m"), 0.0).endpoints) == 3
    assert len(scheduler(pool, fallbacks=2).schedule(SchedulingRequest("m"), 0.0).endpoints) == 3
    one = scheduler(pool, fallbacks=0).schedule(SchedulingRequest("m"), 0.0)
    assert one.endpoints == ("10.0.0.1:8000",) and one.destination == "10.0.0.1:8000"
    assert (
        scheduler(pool, fallbacks=10).schedule(SchedulingRequest("m"), 0.0).destination
        == "10.0.0.1:8000,10.0.0.2:8000,10.0.0.3:8000,10.0.0.4:8000"
    )


@pytest.mark.parametrize("profile", ["llmd-default", "poolgate-default"])
def test_an_endpoint_that_refuses_scrapes_is_not_picked_until_scraped_again(profile):
    pool = make_pool((0, 0.0), (3, 0.5), (4, 0.6))  # 10.0.0.1 is the best by far
    s = scheduler(pool, name=profile, fallbacks=2)
    assert s.schedule(SchedulingRequest("m"), 0.0).primary == "10.0.0.1:8000"
    pool.record_scrape_error("10.0.0.1:8000", "connection refused", unreachable=True)  # its server died
    dead = s.schedule(SchedulingRequest("m"), 0.1)
    assert "10.0.0.1:8000" not in dead.endpoints and len(dead.endpoints) == 2
    assert "10.0.0.1:8000" not in s.schedule(SchedulingRequest("m"), 30.0).endpoints  # every pod stale: still out
    pool.record_scrape_error("10.0.0.2:8000", "connection refused", unreachable=True)
    pool.record_scrape_error("10.0.0.3:8000", "connection refused", unreachable=True)
    assert len(s.schedule(SchedulingRequest("m"), 0.1).endpoints) == 3  # none reachable: the pool keeps trying all
    pool.apply_samples("10.0.0.1:8000", vllm(0, 0.0), now=0.2)  # restarted: a good scrape
    assert s.schedule(SchedulingRequest("m"), 0.2).primary == "10.0.0.1:8000"


def test_lifecycle_books_and_releases_in_flight_requests():
    pool = make_pool((0, 0.0), (0, 0.0))
    s = scheduler(pool, name="poolgate-default")
    decision = s.schedule(SchedulingRequest("m", PromptInput(b"p" * 400)), 0.0)
    primary = pool.get(decision.primary)
    assert (primary.inflight, primary.inflight_tokens, primary.unreflected) == (1, 100, 1)
    fallback = decision.endpoints[1]
    s.on_served(decision, fallback)  # the proxy retried on the fallback
    assert primary.inflight == 0 and pool.get(fallback).inflight == 1
    s.on_first_token(decision, 0.3)
    assert decision.first_token_at == 0.3
    s.on_complete(decision, 1.0)
    s.on_complete(decision, 1.0)
    assert pool.get(fallback).inflight == 0 and pool.get(fallback).inflight_tokens == 0


def test_unreflected_dispatches_spread_a_burst_under_poolgate_default():
    pool = make_pool((0, 0.0), (0, 0.0), (0, 0.0))
    s = scheduler(pool, name="poolgate-default")
    primaries = [s.schedule(SchedulingRequest("m", PromptInput(bytes([i]) * 64)), 0.0).primary for i in range(6)]
    assert sorted(primaries) == sorted(["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"] * 2)


def test_session_affinity_profile_sets_and_honours_the_token():
    config = load_config(
        """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-affinity-scorer
- type: queue-scorer
schedulingProfiles:
- name: sticky
  plugins:
  - pluginRef: session-affinity-scorer
    weight: 10
  - pluginRef: queue-scorer
""",
        random.Random(0),
    )
    pool = make_pool((0, 0.0), (9, 0.0))
    s = Scheduler(pool, config.profile())
    token = encode_session_token("10.0.0.2:8000")
    decision = s.schedule(SchedulingRequest("m", headers={"x-session-token": token}), 0.0)
    assert decision.primary == "10.0.0.2:8000"
    assert s.response_headers(decision, "10.0.0.2:8000") == {"x-session-token": token}
    assert s.schedule(SchedulingRequest("m"), 0.0).primary == "10.0.0.1:8000"


def test_removed_endpoints_leave_the_prefix_index():
    pool = make_pool((0, 0.0), (0, 0.0))
    config = builtin_config("llmd-default", random.Random(0))
    s = Scheduler(pool, config.profile())
    index = config.profile().scorers[2][0].producer
    decision = s.schedule(SchedulingRequest("m", PromptInput(b"z" * 300)), 0.0)  # 75 tokens: 64 + a partial block
    assert index.block_count(decision.primary) == 2
    pool.remove(decision.primary)
    assert index.tracked_endpoints() == []
