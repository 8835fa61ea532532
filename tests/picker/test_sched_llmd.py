"""The `llmd-default` profile reproduces the reference default of llm-d router v0.10: queue 2 + KV 2 + prefix 3
(approximate prefix index over `estimate` pseudo-tokens, blocks of at least 64 tokens = 256 bytes), max-score
picker."""

import itertools
import random
from collections import Counter

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import PromptInput, Scheduler, SchedulingRequest, builtin_config
from picker.scheduling.pickers import MaxScorePicker


def vllm(waiting, running, kv, block_size=None, blocks=None):
    samples = [
        Sample("vllm:num_requests_waiting", {}, waiting, None, None),
        Sample("vllm:num_requests_running", {}, running, None, None),
        Sample("vllm:kv_cache_usage_perc", {}, kv, None, None),
    ]
    if block_size:
        samples.append(
            Sample(
                "vllm:cache_config_info",
                {"block_size": str(block_size), "num_gpu_blocks": str(blocks)},
                1.0,
                None,
                None,
            )
        )
    return samples


def make_pool(*metrics):
    pool = PoolState(clock=lambda: 0.0)
    for i, m in enumerate(metrics, start=1):
        spec = EndpointSpec(f"10.0.0.{i}", 8000)
        pool.upsert(spec)
        if m is not None:
            pool.apply_samples(spec.key, vllm(*m), now=0.0)
    return pool


def set_metrics(pool, **by_host):
    for host, m in by_host.items():
        pool.apply_samples(f"10.0.0.{host[1:]}:8000", vllm(*m), now=0.0)


E1, E2, E3 = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"


def llmd(pool, seed=0, fallbacks=None):
    return Scheduler(pool, builtin_config("llmd-default", random.Random(seed)).profile(), fallbacks=fallbacks)


def req(data=b"x" * 1024):  # 256 pseudo-tokens: 4 blocks of 64
    return SchedulingRequest("model-a", PromptInput(data))


def test_weighted_scores_for_three_endpoints():
    pool = make_pool((0, 1, 0.1), (5, 1, 0.5), (10, 1, 0.9))
    scheduler = llmd(pool)
    # queue: 1, 0.5, 0 (x2); kv: 0.9, 0.5, 0.1 (x2); prefix: 0 (x3)
    assert scheduler.explain(req(), 0.0) == pytest.approx({E1: 3.8, E2: 2.0, E3: 0.2})
    assert scheduler.schedule(req(), 0.0).destination == E1  # one endpoint, as upstream's max-score-picker
    assert llmd(pool, fallbacks=2).schedule(req(), 0.0).destination == f"{E1},{E2},{E3}"


def test_prefix_credit_after_pick_draws_the_same_prompt_back():
    pool = make_pool((0, 1, 0.1), (5, 1, 0.5), (10, 1, 0.9))
    scheduler = llmd(pool)
    assert scheduler.schedule(req(), 0.0).primary == E1  # now credited with all 4 blocks
    set_metrics(pool, e1=(5, 1, 0.5), e2=(0, 1, 0.1), e3=(10, 1, 0.9))
    # e1: queue 0.5x2 + kv 0.5x2 + prefix 1.0x3 = 5.0; e2: 1x2 + 0.9x2 = 3.8; e3: 0 + 0.1x2 = 0.2
    assert scheduler.explain(req(), 0.0) == pytest.approx({E1: 5.0, E2: 3.8, E3: 0.2})
    # a prompt sharing 2 of its 4 blocks scores e1's prefix at 0.5
    assert scheduler.explain(req(b"x" * 512 + b"y" * 512), 0.0)[E1] == pytest.approx(3.5)
    # another model hashes differently: no prefix credit
    other = SchedulingRequest("model-b", PromptInput(b"x" * 1024))
    assert scheduler.explain(other, 0.0)[E1] == pytest.approx(2.0)


def test_queue_scores_are_min_max_and_endpoints_without_metrics_score_as_empty():
    pool = make_pool((4, 0, 0.0), (4, 0, 0.5), None)
    scheduler = llmd(pool)
    # as upstream, the never-scraped endpoint counts as 0 waiting and 0 KV usage: queue 1.0, KV 1.0 -> 4.0, and
    # it is the queue minimum, so the two endpoints with 4 waiting score 0 on queue
    assert scheduler.explain(req(b""), 0.0) == pytest.approx({E1: 2.0, E2: 1.0, E3: 4.0})
    assert scheduler.schedule(req(b""), 0.0).primary == E3
    set_metrics(pool, e3=(4, 0, 0.0))
    assert scheduler.explain(req(b""), 0.0) == pytest.approx({E1: 4.0, E2: 3.0, E3: 4.0})  # equal queues: 1.0
    set_metrics(pool, e1=(0, 0, 0.0), e2=(1, 0, 0.0), e3=(2, 0, 0.0))
    assert scheduler.explain(req(b""), 0.0)[E2] == pytest.approx(3.0)  # queue (2 - 1) / (2 - 0) = 0.5
    set_metrics(pool, e2=(100, 0, 0.0))
    assert scheduler.explain(req(b""), 0.0)[E3] == pytest.approx(2 * 0.98 + 2)  # (100 - 2) / 100


def test_credit_uses_the_endpoint_block_size_and_capacity():
    pool = PoolState(clock=lambda: 0.0)
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    pool.apply_samples(E1, vllm(0, 0, 0.0, block_size=16, blocks=3), now=0.0)
    config = builtin_config("llmd-default", random.Random(0))
    scheduler = Scheduler(pool, config.profile())
    index = config.profile().scorers[2][0].producer
    scheduler.schedule(req(b"q" * 2560), 0.0)  # 640 tokens: 10 blocks of 64 (block_size 16 clamped), LRU capacity 3
    assert index.capacity(E1) == 3 and index.block_count(E1) == 3
    pool.apply_samples(E1, vllm(0, 0, 0.0, block_size=128, blocks=3), now=0.0)
    assert index.match(req(b"q" * 2560), pool.endpoints()).total == 5  # block_size 128 above the clamp: 5 blocks


def test_equal_scores_break_ties_uniformly():
    pool = make_pool(*[(2, 1, 0.5)] * 4)
    scheduler = llmd(pool, seed=3)
    primaries = Counter(scheduler.schedule(req(b""), 0.0).primary for _ in range(4000))
    assert len(primaries) == 4
    assert all(850 < count < 1150 for count in primaries.values()), primaries


def test_tie_breaking_matches_shuffle_then_stable_sort():
    picker = MaxScorePicker(rng=random.Random(11))
    rankings = Counter(tuple(picker.pick(None, [None] * 4, [0.5, 1.0, 0.5, 0.2], 4)) for _ in range(3000))
    assert set(rankings) == {(1, 0, 2, 3), (1, 2, 0, 3)}
    assert 1350 < rankings[(1, 0, 2, 3)] < 1650
    permutations = Counter(tuple(picker.pick(None, [None] * 3, [0.7] * 3, 3)) for _ in range(6000))
    assert set(permutations) == set(itertools.permutations(range(3)))
    assert all(850 < count < 1150 for count in permutations.values()), permutations
