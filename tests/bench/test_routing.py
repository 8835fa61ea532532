"""`poolgate bench routing`: the harness (determinism, the oracle bound, the row shape, the scrape loop, prefix
affinity), not the benchmark's numbers."""

from __future__ import annotations

import dataclasses
import itertools
import random

import orjson
import pytest

from picker.scheduling import PickerConfig, Profile, PromptInput, Scorer, UtilizationDetector, prefix_hashes
from picker.scheduling.pickers import RandomPicker
from poolgate.bench.routing import SCRAPE_INTERVAL
from poolgate.bench.routing.fleet import RequestRecord, ServerPrompts, SoonestFirstToken, simulate
from poolgate.bench.routing.oracle import fleet_capacity, oracle_run, pooled_run
from poolgate.bench.routing.pickers import BOUNDS, ORACLE, PICKERS, build_picker, build_router
from poolgate.bench.routing.results import ROW_FIELDS, over_seeds, percentile, tokens_in_window
from poolgate.bench.routing.runner import Settings, capacities, cases, run_case, run_cases
from poolgate.bench.routing.workloads import WORKLOADS, Turn, WorkloadSpec, chat_body, ramped_time, text
from poolgate.cli import main
from simulator import Prompt, ServerConfig, ServerModel, VirtualClock
from simulator.request import weighted_percentile

SIMULATED = [p for p in PICKERS if p not in BOUNDS]


def small_settings(**overrides) -> Settings:
    values = dict(
        workloads=("prefix-heavy", "multi-lora"), pickers=PICKERS, loads=(0.7,), pods=2, seed=3, duration=40.0
    )
    values.update(overrides)
    return Settings(**values)


def workload(name: str, load: float, pods: int, duration: float, seed: int = 1):
    spec = WORKLOADS[name]
    capacity = fleet_capacity(spec, seed, pods, ServerConfig(), duration=duration)
    return spec.build(load * capacity, seed, duration, ramp=0.2 * duration)


def test_same_seed_same_rows_in_any_process_layout():
    settings = small_settings(pickers=("random", "llmd-default", "poolgate", ORACLE))
    todo = cases(settings, capacities(settings))
    serial = run_cases(todo, settings, jobs=1)
    assert run_cases(todo, settings, jobs=1) == serial
    assert run_cases(todo, settings, jobs=2) == serial
    other_seed = dataclasses.replace(settings, seed=4)
    assert run_cases(cases(other_seed, capacities(other_seed)), other_seed, jobs=1) != serial


def test_rows_have_the_json_shape():
    settings = small_settings(workloads=tuple(WORKLOADS), duration=20.0)
    rows = run_cases(cases(settings, capacities(settings)), settings, jobs=2)
    assert len(rows) == len(WORKLOADS) * len(PICKERS)
    for row in orjson.loads(orjson.dumps(rows)):
        assert tuple(row) == ROW_FIELDS
        assert row["workload"] in WORKLOADS and row["picker"] in PICKERS
        assert row["load"] == 0.7 and row["rate"] > 0
        assert row["completed"] > 0 and row["shed"] == 0 and row["errors"] == 0
        for field in ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s"):
            assert isinstance(row[field], float) and row[field] > 0
        assert row["ttft_p50_s"] <= row["ttft_p90_s"] <= row["ttft_p99_s"]
        assert row["output_tokens_per_s"] > 0 and 0 <= row["prefix_hit_rate"] <= 1


@pytest.mark.parametrize("name", ["prefix-heavy", "no-prefix", "multi-lora"])
def test_the_oracle_is_a_lower_bound_of_every_request_under_every_picker(name):
    load = workload(name, 0.9, pods=2, duration=60.0)
    oracle = {(r.session, r.turn): r for r in oracle_run(load, ServerConfig()).records}
    prompts = ServerPrompts()
    for picker in SIMULATED:
        records = simulate(load, build_router(picker, 1)[0], 2, prompts=prompts).records
        assert len(records) == len(oracle) > 20
        for record in records:
            bound = oracle[record.session, record.turn]
            assert record.ttft >= bound.ttft - 1e-9, (picker, record, bound)
            assert record.cached_tokens <= bound.cached_tokens
            assert record.finished_at >= bound.finished_at - 1e-9


def test_soonest_follows_the_cached_prefix_until_a_cold_prefill_elsewhere_is_sooner():
    clock = VirtualClock()
    config = ServerConfig(max_num_seqs=2)
    servers = {key: ServerModel(clock, config, name=key) for key in ("a", "b")}
    shared = Prompt.from_segments([("system", 6000), ("question-0", 100)])
    servers["a"].submit(shared, 1)
    clock.run_until_idle()
    asked = Prompt.from_segments([("system", 6000), ("question-1", 100)])
    soonest = SoonestFirstToken()
    assert soonest.pick(servers, asked, 50, config.model) == "a"  # 6,000 cached tokens: 0.06 s against 1.56 s
    for n in range(2):  # a's batch fills with two long answers: its next place frees after about 2,000 x 24 ms
        servers["a"].submit(Prompt.from_segments([(f"long-{n}", 100)]), 2000)
    clock.run_until(clock.now() + 1.0)
    assert soonest.pick(servers, asked, 50, config.model) == "b"
    assert servers["b"].first_token_forecast(asked, 50) == pytest.approx(clock.now() + 0.030 + 6100 * 0.00025)


def test_oracle_row_bounds_every_picker_row():
    settings = small_settings(workloads=("no-prefix",), loads=(1.0,), duration=60.0)
    rows = run_cases(cases(settings, capacities(settings)), settings, jobs=2)
    oracle = next(r for r in rows if r["picker"] == ORACLE)
    for row in rows:
        for field in ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s"):
            assert oracle[field] <= row[field]


def test_oracle_and_capacity_follow_the_latency_parameters():
    def fixed(rng):  # unique 100-token messages, 10 output tokens
        while True:
            yield (Turn(chat_body("m", [{"role": "user", "content": text(rng, 100)}], 10), 10),)

    spec = WorkloadSpec("fixed", "", fixed)
    config = ServerConfig(model="m")
    # the chat template adds "<|user|>\n", "<|end|>\n" and "<|assistant|>\n": 431 bytes = 108 tokens, none cached;
    # per request at full batches: 0.030 + 108 x 0.00025 + 9 x 0.024 / 16 = 0.0705 s, so 2 pods do 28.37/s
    assert fleet_capacity(spec, 0, 2, config, requests=50) == pytest.approx(2 / 0.0705)
    records = oracle_run(spec.build(10.0, 0, 5.0), config).records
    assert len(records) > 20
    for record in records:
        assert record.ttft == pytest.approx(0.030 + 108 * 0.00025)
        assert record.finished_at - record.first_token_at == pytest.approx(9 * 0.012)


class Probe(Scorer):
    """Records what `observe(cycle, endpoints)` returns at each scoring cycle (and scores nothing)."""

    type_name = "probe"

    def __init__(self, observe) -> None:
        super().__init__()
        self.observe = observe
        self.seen: list = []

    def score(self, cycle, endpoints):
        self.seen.append(self.observe(cycle, endpoints))
        return [0.0] * len(endpoints)


def metrics_ages(cycle, endpoints) -> list[float]:
    return [cycle.now - e.metrics.updated_at for e in endpoints]


def test_scrape_loop_feeds_every_endpoint_every_50ms_staggered():
    load = workload("no-prefix", 0.8, pods=4, duration=30.0)
    probe = Probe(metrics_ages)
    config = PickerConfig(
        {"probe": Profile("probe", [], [(probe, 1.0)], RandomPicker(rng=random.Random(0)))}, UtilizationDetector()
    )
    result = simulate(load, config, 4, keep_scrape_times=True)
    assert SCRAPE_INTERVAL == 0.05
    firsts = sorted(times[0] for times in result.scrapes.values())
    assert firsts == pytest.approx([-0.05, -0.0375, -0.025, -0.0125])  # staggered over one interval
    for times in result.scrapes.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) == pytest.approx(0.05) and max(gaps) == pytest.approx(0.05)
        assert times[-1] >= result.end - 0.05  # scraped until the last response ended
    ages = [age for cycle_ages in probe.seen for age in cycle_ages]
    assert len(ages) == 4 * len(result.records)
    assert min(ages) >= 0.0 and max(ages) <= 0.05 + 1e-9  # the picker sees scrape-stale metrics
    assert max(ages) > 0.04


def test_picker_and_server_see_the_same_prefix_reuse():
    spec = WORKLOADS["prefix-heavy"]
    turns = [session.turns[0] for session in spec.build(2.0, 0, 300.0).sessions]
    by_group: dict[str, list[Turn]] = {}
    for turn in turns:
        by_group.setdefault(turn.body["messages"][0]["content"], []).append(turn)
    same = next(group for group in by_group.values() if len(group) > 1)
    other = next(group for group in by_group.values() if group is not same)
    prompts = ServerPrompts()

    def server_blocks(turn):
        return prompts(turn.body).block_hashes(16, turn.body["model"])

    def picker_blocks(turn):
        prompt = PromptInput.from_body(turn.body, "/v1/chat/completions")
        return prefix_hashes(prompt.data, turn.body["model"], "", 64, 1024)

    def shared(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    # a 6,000-token system prompt is ~24,000 bytes = 375 blocks of 64 bytes / 16 tokens on both sides
    assert 370 <= shared(server_blocks(same[0]), server_blocks(same[1])) <= 377
    assert 370 <= shared(picker_blocks(same[0]), picker_blocks(same[1])) <= 377
    assert shared(server_blocks(same[0]), server_blocks(other[0])) == 0
    assert shared(picker_blocks(same[0]), picker_blocks(other[0])) == 0


def test_prefix_affinity_raises_the_prefix_hit_rate_over_round_robin():
    settings = small_settings(
        workloads=("prefix-heavy",),
        pickers=("round-robin", "llmd-default", "poolgate"),
        loads=(0.5,),
        pods=4,
        duration=400.0,
    )
    rows = {row["picker"]: row for row in run_cases(cases(settings, capacities(settings)), settings, jobs=2)}
    assert rows["llmd-default"]["prefix_hit_rate"] > rows["round-robin"]["prefix_hit_rate"] + 0.15
    assert rows["poolgate"]["prefix_hit_rate"] > rows["round-robin"]["prefix_hit_rate"] + 0.15


def test_multi_turn_sessions_wait_for_the_previous_answer():
    load = workload("multi-turn", 0.5, pods=2, duration=60.0)
    records = simulate(load, build_picker("poolgate", 1), 2).records
    by_turn = {(r.session, r.turn): r for r in records}
    follow_ups = [r for r in records if r.turn > 0]
    assert follow_ups
    for record in follow_ups:
        previous = by_turn[record.session, record.turn - 1]
        think = load.sessions[record.session].turns[record.turn].think
        assert record.arrival == pytest.approx(previous.finished_at + think)
    assert sum(r.cached_tokens for r in follow_ups) > 0.5 * sum(r.prompt_tokens for r in follow_ups)


def test_ramp_up_and_result_helpers():
    assert ramped_time(0.0, 10.0) == 0.0
    assert ramped_time(5.0, 10.0) == pytest.approx(10.0)  # half the ramp's arrivals come by its end
    assert ramped_time(2.5, 10.0) == pytest.approx(50**0.5)
    assert ramped_time(7.0, 10.0) == pytest.approx(12.0)
    assert ramped_time(7.0, 0.0) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0
    assert percentile([], 50) is None
    assert weighted_percentile([(0.5, 1), (0.1, 8), (0.2, 1)], 90) == 0.2
    assert weighted_percentile([(0.5, 1), (0.1, 8), (0.2, 1)], 99) == 0.5
    record = RequestRecord(0, 0, 0.0, first_token_at=1.0, itl_runs=[[0.5, 4], [1.0, 2]])  # tokens at 1, 1.5 .. 5
    assert tokens_in_window(record, 0.0, 10.0) == 7
    assert tokens_in_window(record, 1.2, 3.0) == 4  # 1.5, 2.0, 2.5, 3.0
    assert tokens_in_window(record, 3.5, 4.5) == 1  # 4.0
    assert tokens_in_window(record, 6.0, 9.0) == 0


def test_cli_writes_rows_plots_and_accepts_extra_configs(tmp_path, capsys):
    config = tmp_path / "least-kv.yaml"
    config.write_text(
        "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
        "plugins:\n- type: kv-cache-utilization-scorer\n- type: max-score-picker\n"
    )
    out = tmp_path / "rows.json"
    code = main(
        [
            "bench",
            "routing",
            "--workloads",
            "no-prefix",
            "--pickers",
            "round-robin,poolgate,oracle,least-kv",
            "--pods",
            "2",
            "--duration",
            "15",
            "--loads",
            "0.5,0.9",
            "--jobs",
            "1",
            "--config",
            f"least-kv={config}",
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    assert code == 0
    rows = orjson.loads(out.read_bytes())
    assert sorted((r["load"], r["picker"]) for r in rows) == sorted(  # least-kv listed and configured: run once
        (load, picker) for load in (0.5, 0.9) for picker in ("round-robin", "poolgate", "oracle", "least-kv")
    )
    assert (tmp_path / "plots" / "routing-no-prefix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no-prefix: capacity" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--workloads", "nope"], "unknown workload"),
        (["--pickers", "nope"], "unknown picker"),
        (["--pods", "65"], "pods must be within"),
        (["--config", "broken"], "NAME=FILE"),
        (["--picker-replicas", "0"], "picker replicas must be within"),
        (["--scrape-interval", "-1"], "scrape interval must be >= 0"),
        (["--kv-blocks", "0"], "kv blocks must be at least 1"),
        (["--peer-delay", "soon"], "neither seconds nor off"),
        (["--peer-delay", "-1"], "peer delay must be >= 0"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--pickers", "poolgate,random", "--against", "llmd-default"], "not among the pickers run"),
    ],
)
def test_cli_refuses_bad_settings(arguments, message, capsys):
    assert main(["bench", "routing", "--no-plots", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_cli_runs_every_case_at_each_seed_and_divides_by_the_reference_seed_by_seed(tmp_path, capsys):
    out = tmp_path / "rows.json"
    arguments = ["--workloads", "prefix-heavy", "--pickers", "random,poolgate", "--pods", "2", "--duration", "20"]
    arguments += ["--loads", "0.7", "--jobs", "2", "--no-plots", "--seed", "3", "--json", str(out)]
    assert main(["bench", "routing", *arguments, "--seeds", "3", "--against", "random"]) == 0
    rows = orjson.loads(out.read_bytes())
    assert sorted((r["seed"], r["picker"]) for r in rows) == [(s, p) for s in (3, 4, 5) for p in ("poolgate", "random")]
    p90 = {(r["seed"], r["picker"]): r["ttft_p90_s"] for r in rows}
    for picker in ("poolgate", "random"):  # each seed is its own workload
        assert len({p90[seed, picker] for seed in (3, 4, 5)}) == 3
    assert main(["bench", "routing", *arguments, "--seed", "4", "--json", str(tmp_path / "one.json")]) == 0
    assert [r for r in orjson.loads((tmp_path / "one.json").read_bytes()) if r["picker"] == "poolgate"] == [
        r for r in rows if r["seed"] == 4 and r["picker"] == "poolgate"
    ]  # a seed's rows do not depend on the other seeds run beside it
    text = capsys.readouterr().out
    assert "TTFT p90 over seeds 3..5" in text
    summary = over_seeds(rows, "random")
    ratios = [p90[seed, "poolgate"] / p90[seed, "random"] for seed in (3, 4, 5)]
    mine = next(r for r in summary if r["picker"] == "poolgate")
    assert mine["seeds"] == "3 / 4 / 5" and mine["against"] == "random"
    assert mine["ttft_p90_s"] == " / ".join(f"{p90[seed, 'poolgate']:.3f}" for seed in (3, 4, 5))
    assert mine["ratio"] == " / ".join(f"{ratio:.3f}" for ratio in ratios)
    assert mine["ratio_median"] == pytest.approx(sorted(ratios)[1], abs=1e-4)
    assert mine["ratio_mean"] == pytest.approx(sum(ratios) / 3, abs=1e-4)
    assert over_seeds(rows, None)[0]["ratio_median"] is None


def test_run_case_uses_the_case_rate():
    settings = small_settings(workloads=("no-prefix",), pickers=("least-request",), loads=(0.5, 1.0))
    capacity = capacities(settings)["no-prefix"]
    low, high = (run_case(case, settings) for case in cases(settings, capacities(settings)))
    assert low["rate"] == pytest.approx(0.5 * capacity, abs=1e-3) and high["rate"] == pytest.approx(capacity, abs=1e-3)
    assert high["completed"] > 1.5 * low["completed"]


@pytest.mark.parametrize("picker", ["llmd-precise", "poolgate"])
def test_precise_profiles_route_on_what_the_servers_report_caching(picker):
    """The servers' KV events reach the precise index in order (every endpoint's index is trusted and holds
    blocks), and the picker tokenizes a body into as many ids as the servers count."""
    from poolgate.bench.routing.fleet import ServerTokenizer, _precise_producer

    config = build_picker(picker, 0)
    producer = _precise_producer(config)
    assert producer is not None
    run = simulate(workload("prefix-heavy", 0.5, 2, 60.0), config, 2)
    keys = sorted({r.endpoint for r in run.records if r.endpoint})
    assert len(keys) == 2 and all(producer.index.reliable(key) for key in keys)
    assert all(producer.index.block_count(key) > 0 for key in keys)
    body = WORKLOADS["prefix-heavy"].build(1.0, 1, 60.0, ramp=12.0).sessions[-1].turns[0].body
    tokens = ServerTokenizer().tokenize(body)
    assert tokens is not None and len(tokens) == ServerPrompts()(body).num_tokens


def test_cache_pressure_needs_more_kv_cache_than_the_fleet_has():
    from poolgate.bench.routing import workloads

    config = ServerConfig()
    fleet_tokens = 8 * config.num_gpu_blocks * config.block_size
    assert 4 * fleet_tokens < workloads.PRESSURE_GROUPS * workloads.SYSTEM_TOKENS
    turns = [session.turns[0] for session in WORKLOADS["cache-pressure"].build(5.0, 0, 200.0).sessions]
    systems = [turn.body["messages"][0]["content"] for turn in turns]
    counts = sorted((systems.count(s) for s in set(systems)), reverse=True)
    assert counts[0] > 10 * counts[len(counts) // 2]  # Zipf: a few hot groups, a long cold tail


def test_picker_replicas_take_the_requests_in_turn():
    load = workload("no-prefix", 0.8, pods=2, duration=30.0)
    probes = [Probe(lambda cycle, _: cycle.request.request_id) for _ in range(2)]
    first, second = (
        PickerConfig(
            {"probe": Profile("probe", [], [(p, 1.0)], RandomPicker(rng=random.Random(0)))}, UtilizationDetector()
        )
        for p in probes
    )
    run = simulate(load, first, 2, replicas=[second])
    ids = [f"{r.session}-{r.turn}" for r in sorted(run.records, key=lambda r: r.arrival)]
    assert len(ids) > 20
    assert probes[0].seen == ids[0::2] and probes[1].seen == ids[1::2]


@pytest.mark.parametrize("peer_delay", [0.001, None])
def test_picker_replicas_share_their_load_after_the_peer_delay(peer_delay):
    load = workload("no-prefix", 0.8, pods=2, duration=30.0)
    probes = [Probe(lambda cycle, _: sum(e.peer_inflight for e in cycle.pool.endpoints())) for _ in range(2)]
    first, second = (
        PickerConfig(
            {"probe": Profile("probe", [], [(p, 1.0)], RandomPicker(rng=random.Random(0)))}, UtilizationDetector()
        )
        for p in probes
    )
    simulate(load, first, 2, replicas=[second], peer_delay=peer_delay)
    if peer_delay is None:
        assert max(probes[0].seen + probes[1].seen) == 0
    else:  # each replica holds the other's requests in flight: about half of them
        assert max(probes[0].seen) > 2 and max(probes[1].seen) > 2


def test_every_picker_replica_is_fed_every_servers_kv_events():
    from poolgate.bench.routing.fleet import _precise_producer

    replicas = [build_picker("poolgate", 0, replica=r) for r in range(2)]
    run = simulate(workload("prefix-heavy", 0.5, 2, 40.0), replicas[0], 2, replicas=replicas[1:])
    indexes = [_precise_producer(config).index for config in replicas]
    keys = {r.endpoint for r in run.records}
    assert len(keys) == 2
    for key in keys:
        assert indexes[0].reliable(key) and indexes[1].reliable(key)
        assert indexes[0].block_count(key) == indexes[1].block_count(key) > 0


def test_perfect_state_scrapes_every_server_right_before_each_pick():
    load = workload("no-prefix", 0.8, pods=4, duration=30.0)
    probe = Probe(metrics_ages)
    config = PickerConfig(
        {"probe": Profile("probe", [], [(probe, 1.0)], RandomPicker(rng=random.Random(0)))}, UtilizationDetector()
    )
    result = simulate(load, config, 4, scrape_interval=0.0)
    ages = [age for cycle_ages in probe.seen for age in cycle_ages]
    assert len(ages) == 4 * len(result.records) > 40
    assert max(ages) == 0.0
    with pytest.raises(ValueError, match="scrape interval"):
        simulate(load, config, 4, scrape_interval=-1.0)


def test_kv_blocks_size_every_servers_cache():
    settings = small_settings(workloads=("multi-turn",), pickers=("llmd-default",), loads=(0.5,), duration=60.0)
    case = cases(settings, capacities(settings))[0]
    roomy = run_case(case, settings)
    cramped = run_case(case, dataclasses.replace(settings, kv_blocks=300))  # 4,800 tokens: a few histories at most
    assert roomy["prefix_hit_rate"] > 0.6 > 0.3 > cramped["prefix_hit_rate"]


def test_the_pooled_bound_waits_for_a_free_batch_slot_only_when_the_fleets_slots_are_all_taken():
    def fixed(rng):  # unique 100-token messages, 101 output tokens
        while True:
            yield (Turn(chat_body("m", [{"role": "user", "content": text(rng, 100)}], 101), 101),)

    config = ServerConfig(model="m", max_num_seqs=2)
    light = WorkloadSpec("fixed", "", fixed).build(1.0, 0, 30.0)  # a request per second holds a slot ~1.3 s
    oracle = oracle_run(light, config).records
    for pods, waited in ((4, False), (1, True)):
        pooled = pooled_run(light, config, pods).records
        assert [(r.session, r.arrival) for r in pooled] == [(r.session, r.arrival) for r in oracle]
        assert all(p.ttft >= o.ttft - 1e-9 for p, o in zip(pooled, oracle, strict=True))
        assert any(p.ttft > o.ttft + 1e-6 for p, o in zip(pooled, oracle, strict=True)) is waited
        # the gaps follow the batch the busy slots make, spread over the pods
        assert {r.itl_runs[0][0] for r in pooled} <= {config.decode_step_time(1), config.decode_step_time(2)}
