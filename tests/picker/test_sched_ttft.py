"""The `predicted-ttft-scorer` of poolgate's default profile: hand-computed predictions and online learning."""

import math
import random

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import (
    ConfigError,
    CycleState,
    PrefixIndex,
    PromptInput,
    Scheduler,
    SchedulingRequest,
    builtin_config,
    load_config,
)
from picker.scheduling.ttft import PredictedTtftScorer, _Backlog


def vllm(waiting, running, kv, blocks=None, lora=None):
    samples = [
        Sample("vllm:num_requests_waiting", {}, waiting, None, None),
        Sample("vllm:num_requests_running", {}, running, None, None),
        Sample("vllm:kv_cache_usage_perc", {}, kv, None, None),
    ]
    if blocks:
        samples.append(
            Sample("vllm:cache_config_info", {"block_size": "16", "num_gpu_blocks": str(blocks)}, 1.0, None, None)
        )
    if lora:
        samples.append(Sample("vllm:lora_requests_info", lora, 1.0, None, None))
    return samples


def make_pool(*metrics):
    pool = PoolState(clock=lambda: 0.0)
    for i, m in enumerate(metrics, start=1):
        pool.upsert(EndpointSpec(f"10.0.0.{i}", 8000))
        pool.apply_samples(f"10.0.0.{i}:8000", vllm(*m), now=0.0)
    return pool


PROMPT = PromptInput(bytes(range(200)) * 20)  # 4000 bytes = 1000 estimated tokens = 16 blocks of 64 tokens


def test_predictions_for_three_endpoints():
    pool = make_pool((2, 4, 0.5), (0, 10, 0.9), (0, 0, 0.1))
    index = PrefixIndex()
    scorer = PredictedTtftScorer(index=index)
    request = SchedulingRequest("m", PROMPT)
    hashes = index.match(request, pool.endpoints()).hashes
    index.credit("10.0.0.3:8000", hashes[:12])  # 12 blocks x 64 tokens = 768 cached tokens, 232 uncached
    cycle = CycleState(request, 0.0, pool)
    ttfts = scorer.predict(cycle, pool.endpoints())
    # 0.02 base + 0.001 x running + 0.0002 x uncached tokens + KV pressure (kv - 0.8) / 0.2. The first endpoint's
    # 2 waiting requests run 4 < 10 (the pool's peak): they are a step boundary from joining the batch (6 running).
    assert ttfts == pytest.approx([0.02 + 0.006 + 0.2, 0.02 + 0.01 + 0.2 + 0.5, 0.02 + 0.0464])
    # cost = ttft + prefill x (prefillPenalty + running / peak x busy / (1 - busy)), busy = (6/10 + 10/10 + 0) / 3
    per_running = (1.6 / 3) / (1 - 1.6 / 3) / 10
    for penalty in (0.0, 1.0):
        scorer = PredictedTtftScorer(index=index, prefill_penalty=penalty)
        costs = [
            0.226 + 0.2 * (penalty + 6 * per_running),
            0.73 + 0.2 * (penalty + 10 * per_running),
            0.0664 + 0.0464 * penalty,
        ]
        best = min(costs)
        assert scorer.score(cycle, pool.endpoints()) == pytest.approx([best / cost for cost in costs])


def test_a_full_batch_waits_for_slots():
    pool = make_pool((3, 16, 0.2), (0, 12, 0.2))
    scorer = PredictedTtftScorer(index=PrefixIndex(), slot_seconds=8.0)
    cycle = CycleState(SchedulingRequest("m", PROMPT), 0.0, pool)
    # 3 wait behind a batch of 16 (the peak): 4 requests must end, one every 8 s / 16
    assert scorer.predict(cycle, pool.endpoints()) == pytest.approx([0.02 + 0.016 + 0.2 + 2.0, 0.02 + 0.012 + 0.2])
    pool.dispatch("10.0.0.1:8000", 1000, 0.0)
    pool.dispatch("10.0.0.1:8000", 1000, 0.0)
    assert scorer.predict(cycle, pool.endpoints())[0] == pytest.approx(0.02 + 0.016 + 0.2 + 3.0)
    pool.apply_samples("10.0.0.1:8000", vllm(3, 15, 0.2), now=0.0)  # a slot freed, refilled at the next step
    assert scorer.predict(cycle, pool.endpoints())[0] == pytest.approx(0.02 + 0.016 + 0.2 + 1.5)


def test_requests_ended_since_the_scrape_free_their_slots():
    config = load_config(
        """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: predicted-ttft-scorer
  parameters: {slotSeconds: 8, slotSecondsSmoothing: 0}
""",
        random.Random(0),
    )
    pool = make_pool((0, 10, 0.0))
    scheduler = Scheduler(pool, config.profile(), fallbacks=0)
    scorer = config.profile().scorers[0][0]
    sent = scheduler.schedule(SchedulingRequest("m"), 0.5)
    pool.apply_samples("10.0.0.1:8000", vllm(2, 16, 0.0), now=1.0)  # counts the request sent at 0.5
    cycle = CycleState(SchedulingRequest("m"), 1.6, pool)
    assert scorer.predict(cycle, pool.endpoints()) == pytest.approx([0.02 + 0.016 + 3 * 0.5])
    scheduler.on_complete(sent, 1.5)
    assert scorer.predict(cycle, pool.endpoints()) == pytest.approx([0.02 + 0.016 + 2 * 0.5])
    pool.apply_samples("10.0.0.1:8000", vllm(2, 16, 0.0), now=2.0)  # a newer scrape no longer counts it
    assert scorer.predict(CycleState(SchedulingRequest("m"), 2.0, pool), pool.endpoints()) == pytest.approx(
        [0.02 + 0.016 + 3 * 0.5]
    )


def test_missed_dispatches_count_as_running():
    pool = make_pool((0, 0, 0.0), (3, 0, 0.0))
    for key in ("10.0.0.1:8000", "10.0.0.2:8000"):
        pool.dispatch(key, 10, 0.0)
        pool.dispatch(key, 10, 0.0)
    scorer = PredictedTtftScorer(index=PrefixIndex())
    ttfts = scorer.predict(CycleState(SchedulingRequest("m"), 0.0, pool), pool.endpoints())
    assert ttfts == pytest.approx([0.02 + 2 * 0.001, 0.02 + 5 * 0.001])  # nothing ever ran: no batch is full


def test_prefill_backlog_drains_and_ends_at_the_first_token():
    pool = make_pool((0, 0, 0.0), (0, 0, 0.0))
    config = builtin_config("poolgate-default", random.Random(0))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation)
    scorer = config.profile().scorers[0][0]
    first = scheduler.schedule(SchedulingRequest("m", PROMPT), 0.0)
    second = scheduler.schedule(SchedulingRequest("m", PromptInput(bytes(range(100, 200)) * 40)), 0.0)
    assert first.primary != second.primary  # the first one's 0.2 s of prefill makes its endpoint slower
    third = scheduler.schedule(SchedulingRequest("m", PromptInput(b"x" * 4000)), 0.0)
    assert scorer.backlogs[third.primary].at(0.0) == pytest.approx(0.4)  # two prefills of 1,000 tokens
    assert scorer.backlogs[third.primary].at(0.1) == pytest.approx(0.3)
    earlier = first if first.primary == third.primary else second
    scheduler.on_first_token(earlier, 0.15)  # only the third one's prefill can be left
    assert scorer.backlogs[third.primary].at(0.15) == pytest.approx(0.2)


def test_prompt_that_does_not_fit_the_free_kv_blocks_is_penalised():
    pool = make_pool((0, 0, 0.95, 100), (0, 0, 0.95, 100_000))
    scorer = PredictedTtftScorer(index=PrefixIndex())
    cycle = CycleState(SchedulingRequest("m", PROMPT), 0.0, pool)
    full, roomy = scorer.predict(cycle, pool.endpoints())
    assert roomy == pytest.approx(0.02 + 0.2 + 0.75)
    assert full == pytest.approx(roomy + 2.0)  # 62.5 blocks needed, 5 free


def test_lora_adapter_loading_costs():
    infos = [
        {"max_lora": "2", "running_lora_adapters": "sql", "waiting_lora_adapters": ""},
        {"max_lora": "2", "running_lora_adapters": "x", "waiting_lora_adapters": ""},
        {"max_lora": "1", "running_lora_adapters": "x", "waiting_lora_adapters": ""},
    ]
    pool = make_pool(*[(0, 0, 0.0, None, info) for info in infos])
    scorer = PredictedTtftScorer(index=PrefixIndex())
    adapter = scorer.predict(CycleState(SchedulingRequest("sql"), 0.0, pool), pool.endpoints())
    assert adapter == pytest.approx([0.02, 0.22, 5.02])
    base = scorer.predict(CycleState(SchedulingRequest("llama"), 0.0, pool), pool.endpoints())
    assert base == pytest.approx([0.02] * 3)  # not an adapter: no LoRA cost
    hinted = SchedulingRequest("new-adapter", base_model="llama")
    assert scorer.predict(CycleState(hinted, 0.0, pool), pool.endpoints()) == pytest.approx([0.22, 0.22, 5.02])


def test_poolgate_default_spills_from_a_full_cached_endpoint_only_when_the_pool_has_room():
    pool = make_pool((0, 16, 0.1), (0, 16, 0.1))
    config = builtin_config("poolgate-default", random.Random(0))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation)
    cached = scheduler.schedule(SchedulingRequest("m", PROMPT), 0.0).primary
    other = next(key for key in ("10.0.0.1:8000", "10.0.0.2:8000") if key != cached)
    # 1 s later (the first prefill is done): cached 0.02 + 0.016 = 0.036 s; the other 0.236 s plus its 0.2 s prefill
    # x (prefillPenalty 0 + 16/16 x busy / (1 - busy)) with the busy pool (1.0, capped at 0.95): 0.236 + 0.2 x 19
    assert scheduler.schedule(SchedulingRequest("m", PROMPT), 1.0).primary == cached
    pool.apply_samples(cached, vllm(2, 16, 0.1), now=1.0)  # full: 3 requests must end, one every 10 s / 16
    assert scheduler.schedule(SchedulingRequest("m", PROMPT), 1.0).primary == cached  # 1.911 s < 4.036 s
    # the other endpoint empties: 0.22 s, and no capacity cost with nothing running there, < 1.911 s
    pool.apply_samples(other, vllm(0, 0, 0.1), now=1.0)
    assert scheduler.schedule(SchedulingRequest("m", PROMPT), 1.0).primary == other


def test_online_learning_recovers_the_server_costs():
    config = load_config(
        """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: predicted-ttft-scorer
  parameters: {learnOnline: true}
""",
        random.Random(0),
    )
    pool = make_pool((0, 0, 0.0))
    scheduler = Scheduler(pool, config.profile(), fallbacks=0)
    scorer = config.profile().scorers[0][0]
    truth = [0.05, 0.01, 0.5]  # base, per running request, per 1000 uncached tokens
    rng = random.Random(1)
    now = 0.0
    for _ in range(300):
        running = rng.randint(0, 30)
        pool.apply_samples("10.0.0.1:8000", vllm(0, running, 0.0), now=now)
        prompt = PromptInput(rng.randbytes(rng.randint(0, 4000)))
        decision = scheduler.schedule(SchedulingRequest("m", prompt), now)
        observed = truth[0] + truth[1] * running + truth[2] * prompt.estimated_tokens / 1000
        scheduler.on_first_token(decision, now + observed)  # (its first token also ends its prefill backlog)
        scheduler.on_complete(decision, now + observed)
        now += 5.0
    assert scorer.coefficients == pytest.approx(truth, rel=0.02)


def test_poolgate_default_learns_its_constants_online():
    pool = make_pool((0, 0, 0.0))
    config = builtin_config("poolgate-default", random.Random(0))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation)
    scorer = config.profile().scorers[0][0]
    assert scorer.coefficients == pytest.approx([0.02, 0.001, 0.2])  # base, per running, per 1000 tokens
    decision = scheduler.schedule(SchedulingRequest("m", PROMPT), 0.0)
    scheduler.on_first_token(decision, 1.0)  # far slower than the 0.22 s predicted
    assert scorer.coefficients[0] > 0.02 and scorer.coefficients[2] > 0.2


def test_a_cache_miss_pays_for_the_queue_it_builds_where_prompts_fill_the_time():
    # Two idle endpoints (nothing running: the slot term is 0). The picker has sent 10 requests of 0.5 s of prefill
    # each to both over the last seconds: prefill load 0.8 and 2 requests per second each.
    pool = make_pool((0, 0, 0.0), (0, 0, 0.0))
    index = PrefixIndex()
    scorer = PredictedTtftScorer(index=index, prefill_queue_cost=True, load_window_seconds=10.0)
    for key in ("10.0.0.1:8000", "10.0.0.2:8000"):
        scorer.backlogs[key] = _Backlog(work_rate=0.8, request_rate=2.0, rated_at=10.0)
    scorer.backlogs["10.0.0.1:8000"].seconds, scorer.backlogs["10.0.0.1:8000"].updated_at = 0.3, 10.0
    request = SchedulingRequest("m", PROMPT)
    index.credit("10.0.0.1:8000", index.match(request, pool.endpoints()).hashes)
    cycle = CycleState(request, 10.0, pool)
    cached, missed = scorer.predict(cycle, pool.endpoints())
    assert (cached, missed) == pytest.approx([0.02 + 0.3, 0.02 + 0.2])  # the miss has the lower TTFT
    # the miss's 0.2 s prefill lengthens the other endpoint's busy period, 2 requests/s arrive meanwhile:
    # + 0.2 x 2.0 x (0 + 0.2 / 2) / (1 - 0.8); the cached request computes nothing and builds no queue
    miss_cost = 0.22 + 0.2 * 2.0 * 0.1 / 0.2
    assert scorer.score(cycle, pool.endpoints()) == pytest.approx([1.0, 0.32 / miss_cost])
    assert miss_cost > 0.32
    # the rates fade over the window: 30 s later only e^-3 of them is left, and the backlog is done
    later = CycleState(request, 40.0, pool)
    fading = 0.22 + 0.2 * 2.0 * math.exp(-3) * 0.1 / (1 - 0.8 * math.exp(-3))
    assert scorer.score(later, pool.endpoints()) == pytest.approx([1.0, 0.02 / fading])
    # off (the default): the miss costs its TTFT only
    scorer.prefill_queue_cost = False
    assert scorer.score(cycle, pool.endpoints()) == pytest.approx([0.22 / 0.32, 1.0])


def test_a_second_of_backlog_delays_the_first_token_by_the_backlog_weight():
    # Two idle endpoints; the first caches the prompt and has 0.15 s of prefill backlog, the second computes the
    # whole prompt (0.2 s): predicted TTFTs 0.02 + weight x 0.15 and 0.02 + 0.2.
    pool = make_pool((0, 0, 0.0), (0, 0, 0.0))
    index = PrefixIndex()
    request = SchedulingRequest("m", PROMPT)
    index.credit("10.0.0.1:8000", index.match(request, pool.endpoints()).hashes)
    cycle = CycleState(request, 10.0, pool)
    scores = {}
    for weight in (1.0, 2.0):
        scorer = PredictedTtftScorer(index=index, backlog_weight=weight)
        scorer.backlogs["10.0.0.1:8000"] = _Backlog(seconds=0.15, updated_at=10.0)
        assert scorer.predict(cycle, pool.endpoints()) == pytest.approx([0.02 + weight * 0.15, 0.22])
        scores[weight] = scorer.score(cycle, pool.endpoints())
    assert scores[1.0] == pytest.approx([1.0, 0.17 / 0.22])  # queue behind the backlog
    assert scores[2.0] == pytest.approx([0.22 / 0.32, 1.0])  # compute the prompt on the idle endpoint
    with pytest.raises(ValueError, match="backlogWeight"):
        PredictedTtftScorer(index=index, backlog_weight=0.5)
    configured = load_config(BACKLOG_WEIGHT_CONFIG.format(weight=1.5)).profile().scorers[0][0]
    assert isinstance(configured, PredictedTtftScorer) and configured.backlog_weight == 1.5
    with pytest.raises(ConfigError, match="backlogWeight"):
        load_config(BACKLOG_WEIGHT_CONFIG.format(weight=0.5))


BACKLOG_WEIGHT_CONFIG = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: predicted-ttft-scorer
  parameters: {{backlogWeight: {weight}}}
"""


def test_sending_a_request_adds_to_the_endpoint_rates():
    backlog = _Backlog()
    backlog.add(0.0, 0.4, 10.0)
    backlog.add(10.0, 0.2, 10.0)
    load, arrivals = backlog.rates(10.0, 10.0)
    assert load == pytest.approx(0.04 * math.exp(-1) + 0.02)
    assert arrivals == pytest.approx(0.1 * math.exp(-1) + 0.1)
    assert backlog.at(10.0) == pytest.approx(0.2)  # the first 0.4 s drained by then


SHARED = bytes(range(256)) * 7  # 1792 bytes: 7 blocks of 64 estimated tokens (448 tokens) shared by a group


def group_request(question: bytes) -> SchedulingRequest:
    """A request of the group: the shared prefix and a question of its own, 4000 bytes = 1000 tokens in all."""
    return SchedulingRequest("m", PromptInput(SHARED + question.ljust(4000 - len(SHARED), b".")))


def test_a_shared_prefix_is_copied_until_it_has_spread_copies():
    # Three idle endpoints; the first caches the group's 448 tokens and has 0.01 s of prefill backlog: a request of
    # the group predicts 0.02 + 0.01 + 0.0002 x 552 = 0.1404 s there, 0.02 + 0.2 = 0.22 s elsewhere.
    pool = make_pool((0, 0, 0.0), (0, 0, 0.0), (0, 0, 0.0))
    index = PrefixIndex()
    scorer = PredictedTtftScorer(index=index, spread_copies=2)
    follows = PredictedTtftScorer(index=index)  # the default: no spreading
    hashes = index.match(group_request(b"a"), pool.endpoints()).hashes
    index.credit("10.0.0.1:8000", hashes[:7])
    for s in (scorer, follows):
        s.backlogs["10.0.0.1:8000"] = _Backlog(seconds=0.01, updated_at=0.0)

    def scores(s: PredictedTtftScorer, question: bytes, now: float = 0.0) -> list[float]:
        return s.score(CycleState(group_request(question), now, pool), pool.endpoints())

    # cached on fewer than 2 endpoints: every endpoint is ranked as a copy, and the holder's backlog counts
    assert scores(scorer, b"b") == pytest.approx([0.22 / 0.23, 1.0, 1.0])
    assert scores(follows, b"b") == pytest.approx([1.0, 0.1404 / 0.22, 0.1404 / 0.22])
    # once the holder's backlog has drained nothing waits there: no copy (it would only take cache room)
    assert scores(scorer, b"e", now=1.0) == pytest.approx([1.0, 0.1304 / 0.22, 0.1304 / 0.22])
    # a copy whose extra prefill (0.0896 s) exceeds spreadMaxSeconds is not made
    scorer.spread_max_seconds = 0.05
    assert scores(scorer, b"d") == pytest.approx([1.0, 0.1404 / 0.22, 0.1404 / 0.22])
    scorer.spread_max_seconds = 0.5
    # with a second copy the group follows its prefix again
    index.credit("10.0.0.2:8000", hashes[:7])
    assert scores(scorer, b"c") == pytest.approx([0.1304 / 0.1404, 1.0, 0.1304 / 0.22])


def test_a_conversation_history_is_not_copied():
    # Each turn's prompt holds the last turn's whole prompt: a continued prefix, not a shared one, is not spread.
    pool = make_pool((0, 0, 0.0), (0, 0, 0.0))
    index = PrefixIndex()
    scorer = PredictedTtftScorer(index=index, spread_copies=2)
    history = bytes(range(200)) * 5
    for turn in range(4):
        request = SchedulingRequest("m", PromptInput(history))
        cycle = CycleState(request, 0.0, pool)
        scores = scorer.score(cycle, pool.endpoints())
        if turn:
            assert scores[0] == 1.0 and scores[1] < 1.0  # the endpoint holding the conversation
        index.credit("10.0.0.1:8000", index.match(request, pool.endpoints()).hashes)
        history += bytes([turn]) * 1000
