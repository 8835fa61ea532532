"""Hand-computed expectations for the individual filters, scorers and pickers."""

import random
from collections import Counter

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import CycleState, PrefixIndex, PromptInput, SchedulingRequest, encode_session_token
from picker.scheduling.filters import (
    HeaderBasedTestingFilter,
    ReachableFilter,
    ServedModelFilter,
    StaleMetricsFilter,
    SubsetFilter,
)
from picker.scheduling.framework import Decision, Outcome
from picker.scheduling.pickers import RandomPicker, RoundRobinPicker, WeightedRandomPicker
from picker.scheduling.scorers import (
    ActiveRequestScorer,
    KvCacheUtilizationScorer,
    LoraAffinityScorer,
    NoHitLruScorer,
    RunningRequestsScorer,
    SessionAffinityScorer,
)


def vllm(waiting=0, running=0, kv=0.0, lora=None):
    samples = [
        Sample("vllm:num_requests_waiting", {}, waiting, None, None),
        Sample("vllm:num_requests_running", {}, running, None, None),
        Sample("vllm:kv_cache_usage_perc", {}, kv, None, None),
    ]
    if lora:
        samples.append(Sample("vllm:lora_requests_info", lora, 1.0, None, None))
    return samples


def pool_of(*hosts_and_ports):
    pool = PoolState(clock=lambda: 0.0)
    for host, port in hosts_and_ports:
        pool.upsert(EndpointSpec(host, port))
    return pool


def cycle(pool, now=0.0, **request):
    return CycleState(SchedulingRequest(request.pop("model", "m"), **request), now, pool)


def keys(endpoints):
    return [e.key for e in endpoints]


def test_subset_hint_by_address_or_address_and_port():
    pool = pool_of(("10.0.0.1", 8000), ("10.0.0.1", 8001), ("10.0.0.2", 8000))
    eps = pool.endpoints()
    assert keys(SubsetFilter().filter(cycle(pool), eps)) == keys(eps)  # no hint: everything
    assert keys(SubsetFilter().filter(cycle(pool, subset=("10.0.0.1",)), eps)) == ["10.0.0.1:8000", "10.0.0.1:8001"]
    assert keys(SubsetFilter().filter(cycle(pool, subset=("10.0.0.1:8001", "10.0.0.2:8000")), eps)) == [
        "10.0.0.1:8001",
        "10.0.0.2:8000",
    ]
    assert SubsetFilter().filter(cycle(pool, subset=()), eps) == []  # an empty hint leaves nothing
    assert SubsetFilter().filter(cycle(pool, subset=("10.9.9.9",)), eps) == []


def test_conformance_steering_list_and_ipv6_entries():
    pool = pool_of(("10.0.0.1", 8000), ("fd00::5", 8000))
    eps = pool.endpoints()
    steering = HeaderBasedTestingFilter()
    assert keys(steering.filter(cycle(pool, steering=("[fd00::5]:8000",)), eps)) == ["[fd00::5]:8000"]
    assert keys(steering.filter(cycle(pool, steering=(" 10.0.0.1 ",)), eps)) == ["10.0.0.1:8000"]
    assert keys(steering.filter(cycle(pool), eps)) == keys(eps)


def test_stale_filter_drops_stale_endpoints_only_if_one_is_fresh():
    pool = pool_of(("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1))
    pool.apply_samples("10.0.0.1:1", vllm(), now=10.0)
    pool.apply_samples("10.0.0.2:1", vllm(), now=8.0)
    stale = StaleMetricsFilter(max_age=1.0)
    assert keys(stale.filter(cycle(pool, now=10.5), pool.endpoints())) == ["10.0.0.1:1"]
    assert keys(stale.filter(cycle(pool, now=20.0), pool.endpoints())) == keys(pool.endpoints())


def test_reachable_filter_drops_endpoints_that_refused_their_last_scrape_only_if_one_is_left():
    pool = pool_of(("10.0.0.1", 1), ("10.0.0.2", 1))
    reachable = ReachableFilter()
    eps = pool.endpoints()
    assert reachable.filter(cycle(pool), eps) is eps  # never scraped is not unreachable
    pool.record_scrape_error("10.0.0.1:1", "refused", unreachable=True)
    assert keys(reachable.filter(cycle(pool), eps)) == ["10.0.0.2:1"]
    pool.record_scrape_error("10.0.0.2:1", "timed out")  # slow, not dead: still a candidate
    assert keys(reachable.filter(cycle(pool), eps)) == ["10.0.0.2:1"]
    pool.record_scrape_error("10.0.0.2:1", "refused", unreachable=True)
    assert keys(reachable.filter(cycle(pool), eps)) == keys(eps)  # none reachable: keep them all
    pool.apply_samples("10.0.0.1:1", vllm(), now=1.0)
    assert keys(reachable.filter(cycle(pool), eps)) == ["10.0.0.1:1"]


def test_served_model_filter_drops_endpoints_known_not_to_serve_the_model_when_one_does():
    pool = pool_of(("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1))
    served = ServedModelFilter()
    eps = pool.endpoints()
    assert served.filter(cycle(pool, model="ad1"), eps) is eps  # no list known yet
    pool.apply_served_models("10.0.0.1:1", ["base", "ad1"], ["ad1"])
    pool.apply_served_models("10.0.0.2:1", ["base"])
    # 10.0.0.3 never answered its model list: it stays, it may serve the adapter
    assert keys(served.filter(cycle(pool, model="ad1"), eps)) == ["10.0.0.1:1", "10.0.0.3:1"]
    assert keys(served.filter(cycle(pool, model="base"), eps)) == keys(eps)
    assert served.filter(cycle(pool, model="ad9"), eps) is eps  # listed nowhere (loaded on demand?): all stay
    assert keys(served.filter(cycle(pool, model="ad1"), eps[1:])) == keys(eps[1:])  # the lister is not a candidate
    assert "ad1" in pool.known_adapters


def test_kv_running_and_active_request_scores():
    pool = pool_of(("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1))
    readings = [vllm(0, 2, 0.25), vllm(0, 6, 0.5), vllm(0, 10, 1.0)]
    for key, m in zip(("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"), readings):
        pool.apply_samples(key, m, now=0.0)
    eps = pool.endpoints()
    assert KvCacheUtilizationScorer().score(cycle(pool), eps) == [0.75, 0.5, 0.0]
    assert RunningRequestsScorer().score(cycle(pool), eps) == [1.0, 0.5, 0.0]
    for _ in range(4):
        pool.dispatch("10.0.0.2:1", 10, 0.0)
    pool.dispatch("10.0.0.3:1", 10, 0.0)
    assert ActiveRequestScorer().score(cycle(pool), eps) == [1.0, 0.0, 0.75]
    assert ActiveRequestScorer(idle_threshold=1, max_busy_score=0.5).score(cycle(pool), eps) == [1.0, 0.0, 1.0]


def test_lora_affinity_scores():
    pool = pool_of(*[(f"10.0.0.{i}", 1) for i in range(1, 5)])
    infos = [
        {"max_lora": "2", "running_lora_adapters": "sql", "waiting_lora_adapters": ""},  # running: 1.0
        {"max_lora": "2", "running_lora_adapters": "x", "waiting_lora_adapters": ""},  # room: 0.8
        {"max_lora": "1", "running_lora_adapters": "", "waiting_lora_adapters": "sql"},  # waiting: 0.6
        {"max_lora": "1", "running_lora_adapters": "x", "waiting_lora_adapters": ""},
    ]  # full: 0
    for endpoint, info in zip(pool.endpoints(), infos):
        pool.apply_samples(endpoint.key, vllm(lora=info), now=0.0)
    assert LoraAffinityScorer().score(cycle(pool, model="sql"), pool.endpoints()) == [1.0, 0.8, 0.6, 0.0]


def test_session_affinity_round_trip():
    pool = pool_of(("10.0.0.1", 1), ("10.0.0.2", 1))
    scorer = SessionAffinityScorer()
    token = encode_session_token("10.0.0.2:1")
    assert scorer.score(cycle(pool, headers={"x-session-token": token}), pool.endpoints()) == [0.0, 1.0]
    assert scorer.score(cycle(pool, headers={"x-session-token": "%%% not base64"}), pool.endpoints()) == [0.0, 0.0]
    assert scorer.score(cycle(pool), pool.endpoints()) == [0.0, 0.0]
    decision = Decision(Outcome.PICKED, SchedulingRequest("m"), "p", ("10.0.0.1:1",))
    assert scorer.response_headers(decision, "10.0.0.1:1") == {"x-session-token": encode_session_token("10.0.0.1:1")}


def test_no_hit_lru_spreads_cold_requests():
    pool = pool_of(("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1))
    eps = pool.endpoints()
    index = PrefixIndex()
    scorer = NoHitLruScorer(index=index)

    def pick(key, data=b"cold prompt" * 30):
        c = cycle(pool, prompt=PromptInput(data))
        scores = scorer.score(c, eps)
        scorer.after_pick(c, Decision(Outcome.PICKED, c.request, "p", (key,)))
        return scores

    assert pick("10.0.0.2:1") == [1.0, 0.5, 0.0]  # nobody took a cold request yet: candidate order
    assert pick("10.0.0.1:1", b"other cold" * 30) == [1.0, 0.0, 0.5]  # never-used e1, e3 first, then e2
    # e3 never used: 1.0; then least recently used for cold: e2 (rank 1), e1 (rank 2)
    assert pick("10.0.0.3:1", b"third cold" * 30) == [0.0, 0.5, 1.0]
    warm = b"warm" * 100
    index.credit("10.0.0.1:1", index.match(SchedulingRequest("m", PromptInput(warm)), eps).hashes)
    assert pick("10.0.0.1:1", warm) == [0.5, 0.5, 0.5]  # a prefix hit somewhere: neutral
    scorer.endpoint_removed("10.0.0.3:1")


def test_random_and_weighted_random_and_round_robin_pickers():
    eps = [None] * 3
    rng = random.Random(5)
    assert sorted(RandomPicker(rng=rng).pick(None, eps, [0.0] * 3, 3)) == [0, 1, 2]
    weighted = WeightedRandomPicker(rng=random.Random(9))
    firsts = Counter(weighted.pick(None, eps, [1.0, 3.0, 0.0], 1)[0] for _ in range(4000))
    assert firsts[2] == 0 and 850 < firsts[0] < 1150  # P(first) = 1/4 with A-Res keys u^(1/w)
    assert weighted.pick(None, eps, [1.0, 3.0, 0.0], 3)[2] == 2  # zero scores rank last
    assert sorted(weighted.pick(None, eps, [0.0, 0.0, 0.0], 3)) == [0, 1, 2]
    round_robin = RoundRobinPicker()
    assert [round_robin.pick(None, eps, [], 2) for _ in range(4)] == [[0, 1], [1, 2], [2, 0], [0, 1]]


def test_scorer_parameters_are_validated():
    with pytest.raises(ValueError):
        ActiveRequestScorer(max_busy_score=2.0)
    with pytest.raises(ValueError):
        StaleMetricsFilter(max_age=0)
