"""The `predicted-ttft-scorer` of poolgate's default profile: hand-computed predictions and online learning."""

import random

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import (CycleState, PrefixIndex, PromptInput, SchedulingRequest, Scheduler, builtin_config,
                               load_config)
from picker.scheduling.ttft import PredictedTtftScorer


def vllm(waiting, running, kv, blocks=None, lora=None):
    samples = [Sample("vllm:num_requests_waiting", {}, waiting, None, None),
               Sample("vllm:num_requests_running", {}, running, None, None),
               Sample("vllm:kv_cache_usage_perc", {}, kv, None, None)]
    if blocks:
        samples.append(Sample("vllm:cache_config_info", {"block_size": "16", "num_gpu_blocks": str(blocks)},
                              1.0, None, None))
    if lora:
        samples.append(Sample("vllm:lora_requests_info", lora, 1.0, None, None))
    return samples


def make_pool(*metrics):
    pool = PoolState(clock=lambda: 0.0)
    for i, m in enumerate(metrics, start=1):
        pool.upsert(EndpointSpec(f"10.0.0.{i}", 8000))
        pool.apply_samples(f"10.0.0.{i}:8000", vllm(*m), now=0.0)
    return pool


PROMPT = PromptInput(bytes(range(200)) * 20)  # 4000 bytes = 1000 estimated tokens = 63 blocks of 64 bytes


def test_predictions_for_three_endpoints():
    pool = make_pool((2, 4, 0.5), (0, 10, 0.9), (0, 0, 0.1))
    index = PrefixIndex()
    scorer = PredictedTtftScorer(index=index)
    request = SchedulingRequest("m", PROMPT)
    hashes = index.match(request, pool.endpoints()).hashes
    index.credit("10.0.0.3:8000", hashes[:50])  # 50 blocks x 16 tokens = 800 cached tokens
    cycle = CycleState(request, 0.0, pool)
    ttfts = scorer.predict(cycle, pool.endpoints())
    # 0.01 base + 0.1 x queued + 0.002 x running + 0.0002 x uncached tokens + KV pressure (kv - 0.8) / 0.2
    assert ttfts == pytest.approx([0.01 + 0.2 + 0.008 + 0.2, 0.01 + 0.02 + 0.2 + 0.5, 0.01 + 0.04])
    assert scorer.score(cycle, pool.endpoints()) == pytest.approx([0.05 / 0.418, 0.05 / 0.73, 1.0])


def test_missed_dispatches_count_as_running_or_queued():
    pool = make_pool((0, 0, 0.0), (3, 0, 0.0))
    for key in ("10.0.0.1:8000", "10.0.0.2:8000"):
        pool.dispatch(key, 10, 0.0)
        pool.dispatch(key, 10, 0.0)
    scorer = PredictedTtftScorer(index=PrefixIndex())
    ttfts = scorer.predict(CycleState(SchedulingRequest("m"), 0.0, pool), pool.endpoints())
    assert ttfts == pytest.approx([0.01 + 2 * 0.002, 0.01 + 5 * 0.1])


def test_prompt_that_does_not_fit_the_free_kv_blocks_is_penalised():
    pool = make_pool((0, 0, 0.95, 100), (0, 0, 0.95, 100_000))
    scorer = PredictedTtftScorer(index=PrefixIndex())
    cycle = CycleState(SchedulingRequest("m", PROMPT), 0.0, pool)
    full, roomy = scorer.predict(cycle, pool.endpoints())
    assert roomy == pytest.approx(0.01 + 0.2 + 0.75)
    assert full == pytest.approx(roomy + 2.0)  # 62.5 blocks needed, 5 free


def test_lora_adapter_loading_costs():
    infos = [{"max_lora": "2", "running_lora_adapters": "sql", "waiting_lora_adapters": ""},
             {"max_lora": "2", "running_lora_adapters": "x", "waiting_lora_adapters": ""},
             {"max_lora": "1", "running_lora_adapters": "x", "waiting_lora_adapters": ""}]
    pool = make_pool(*[(0, 0, 0.0, None, info) for info in infos])
    scorer = PredictedTtftScorer(index=PrefixIndex())
    adapter = scorer.predict(CycleState(SchedulingRequest("sql"), 0.0, pool), pool.endpoints())
    assert adapter == pytest.approx([0.01, 0.21, 5.01])
    base = scorer.predict(CycleState(SchedulingRequest("llama"), 0.0, pool), pool.endpoints())
    assert base == pytest.approx([0.01] * 3)  # not an adapter: no LoRA cost
    hinted = SchedulingRequest("new-adapter", base_model="llama")
    assert scorer.predict(CycleState(hinted, 0.0, pool), pool.endpoints()) == \
        pytest.approx([0.21, 0.21, 5.01])


def test_poolgate_default_prefers_the_cached_endpoint_until_its_queue_costs_more():
    pool = make_pool((0, 0, 0.1), (0, 0, 0.1))
    config = builtin_config("poolgate-default", random.Random(0))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation)
    first = scheduler.schedule(SchedulingRequest("m", PROMPT), 0.0)
    other = next(key for key in ("10.0.0.1:8000", "10.0.0.2:8000") if key != first.primary)
    pool.apply_samples(first.primary, vllm(1, 0, 0.1), now=0.0)
    assert scheduler.schedule(SchedulingRequest("m", PROMPT), 0.0).primary == first.primary  # 0.11 s < 0.21 s
    pool.apply_samples(first.primary, vllm(3, 0, 0.1), now=0.0)
    assert scheduler.schedule(SchedulingRequest("m", PROMPT), 0.0).primary == other


def test_online_learning_recovers_the_server_costs():
    config = load_config("""
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: predicted-ttft-scorer
  parameters: {learnOnline: true}
""", random.Random(0))
    pool = make_pool((0, 0, 0.0))
    scheduler = Scheduler(pool, config.profile(), fallbacks=0)
    scorer = config.profile().scorers[0][0]
    truth = [0.05, 0.3, 0.01, 0.5]  # base, per queued, per running, per 1000 uncached tokens
    rng = random.Random(1)
    for _ in range(300):
        waiting, running = rng.randint(0, 8), rng.randint(0, 30)
        pool.apply_samples("10.0.0.1:8000", vllm(waiting, running, 0.0), now=0.0)
        prompt = PromptInput(rng.randbytes(rng.randint(0, 4000)))
        decision = scheduler.schedule(SchedulingRequest("m", prompt), 0.0)
        uncached = prompt.estimated_tokens / 1000
        observed = truth[0] + truth[1] * waiting + truth[2] * running + truth[3] * uncached
        scheduler.on_first_token(decision, observed)
        scheduler.on_complete(decision, observed)
    assert scorer.coefficients == pytest.approx(truth, rel=0.02)
