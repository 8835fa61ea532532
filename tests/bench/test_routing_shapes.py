"""The routing benchmark's shape axis: workloads with other prompt and output lengths, named after them."""

from __future__ import annotations

from itertools import islice

import pytest

from picker.scheduling.config import BUILTIN_CONFIGS
from poolgate.bench.routing.cli import shaped_workloads
from poolgate.bench.routing.fleet import RequestRecord
from poolgate.bench.routing.results import summarize
from poolgate.bench.routing.runner import Settings, capacities, cases, run_case
from poolgate.bench.routing.workloads import WORKLOADS, workload_spec


def turns(name: str, count: int = 40):
    return [session[0] for session in islice(workload_spec(name).content(0), count)]


def test_prefix_heavy_shape_sets_the_system_prompt_and_the_output_length():
    spec = workload_spec("prefix-heavy-p1500-o64")
    assert spec.name == "prefix-heavy-p1500-o64"
    for turn in turns(spec.name):
        system, question = turn.body["messages"]
        assert len(system["content"]) == 4 * 1500 and len(question["content"]) == 4 * 1200
        assert turn.output_tokens == turn.body["max_tokens"] == 64
    default = workload_spec("prefix-heavy")
    assert default is WORKLOADS["prefix-heavy"]
    assert {len(t.body["messages"][0]["content"]) for t in turns("prefix-heavy")} == {4 * 6000}
    # the arrival times are those of the unshaped workload
    shaped = [s.start for s in spec.build(5.0, 0, 30.0).sessions]
    assert shaped == [s.start for s in default.build(5.0, 0, 30.0).sessions] and len(shaped) > 100


def test_an_output_cap_keeps_the_prompts_and_caps_every_output():
    capped, natural = turns("no-prefix-o64", 200), turns("no-prefix", 200)
    assert [t.body["messages"] for t in capped] == [t.body["messages"] for t in natural]
    assert [t.output_tokens for t in capped] == [min(64, t.output_tokens) for t in natural]
    assert all(t.body["max_tokens"] == t.output_tokens for t in capped)
    assert any(t.output_tokens < 64 for t in capped) and any(t.output_tokens > 64 for t in natural)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-prefix-p1500", "'no-prefix' takes no prompt_tokens"),
        ("multi-turn-o64", "'multi-turn' takes no output_tokens"),
        ("prefix-heavy-o0", "unknown workload 'prefix-heavy-o0'"),
        ("prefix-heavy-o64-p1500", "unknown workload"),
        ("chatty-o64", "unknown workload 'chatty-o64'"),
    ],
)
def test_a_shape_a_workload_does_not_take_is_an_error_naming_it(name, message):
    with pytest.raises(ValueError, match=message):
        workload_spec(name)
    with pytest.raises(ValueError, match=message):
        Settings(workloads=[name])


def test_the_shape_options_run_every_combination_a_workload_takes():
    names = shaped_workloads(["prefix-heavy", "no-prefix", "multi-turn"], [1500, 6000], [64, 1000])
    assert names == [
        "prefix-heavy-p1500-o64",
        "prefix-heavy-p1500-o1000",
        "prefix-heavy-p6000-o64",
        "prefix-heavy-p6000-o1000",
        "no-prefix-o64",
        "no-prefix-o1000",
        "multi-turn",
    ]
    assert shaped_workloads(["no-prefix"], [1500], None) == ["no-prefix"]


def test_servers_per_group_counts_the_servers_of_each_system_prompt():
    records = [
        RequestRecord(0, 0, 1.0, endpoint="a", group=0, first_token_at=2.0),
        RequestRecord(1, 0, 1.0, endpoint="b", group=0, first_token_at=2.0),
        RequestRecord(2, 0, 1.0, endpoint="a", group=1, first_token_at=2.0),
        RequestRecord(3, 0, 1.0, endpoint="a", group=1, first_token_at=2.0),
        RequestRecord(4, 0, 0.0, endpoint="c", group=1, first_token_at=2.0),  # in the warm-up: not measured
    ]
    row = summarize(records, workload="w", picker="p", seed=0, rate=1.0, load=0.5, warmup_end=0.5, window_end=10.0)
    assert row["servers_per_group"] == 1.5
    ungrouped = [RequestRecord(0, 0, 1.0, endpoint="a", first_token_at=2.0)]
    assert (
        summarize(ungrouped, workload="w", picker="p", seed=0, rate=1, load=1, warmup_end=0, window_end=5)[
            "servers_per_group"
        ]
        is None
    )


def _variant(spread_copies: int) -> str:
    """poolgate-default's YAML with another `spreadCopies`."""
    default = BUILTIN_CONFIGS["poolgate-default"]
    assert default.count("spreadCopies: 2 ") == 1
    return default.replace("spreadCopies: 2 ", f"spreadCopies: {spread_copies} ")


@pytest.mark.parametrize(
    ("workload", "spread_copies", "same"),
    [
        ("prefix-heavy-p6000-o64", 2, True),  # poolgate-default under another name: the same tie breaks
        ("prefix-heavy-p6000-o64", 0, True),  # no copies: a 6,000-token copy exceeds spreadMaxSeconds anyway
        ("prefix-heavy-p1500-o64", 0, False),  # a 1,500-token one does not: the default copies
    ],
)
def test_a_variant_differs_from_the_built_in_only_where_it_decides_otherwise(workload, spread_copies, same):
    settings = Settings(
        workloads=[workload],
        pickers=("poolgate", "variant"),
        loads=(0.8,),
        pods=4,
        seed=1,
        duration=60.0,
        extra_configs={"variant": _variant(spread_copies)},
    )
    built_in, variant = (run_case(case, settings) for case in cases(settings, capacities(settings)))
    measured = ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "servers_per_group", "prefix_hit_rate")
    assert built_in["completed"] > 50
    assert ({k: built_in[k] for k in measured} == {k: variant[k] for k in measured}) is same
