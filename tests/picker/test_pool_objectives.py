"""InferenceObjective priorities and InferenceModelRewrite precedence and weighted targets."""

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from picker.pool.objectives import (
    ModelRewrite,
    RewriteRule,
    RewriteTable,
    RewriteTarget,
    objective_priority,
    rewrite_from_object,
)


def test_objective_priority_defaults_to_zero():
    priorities = {"premium": 10, "batch": -1, "unset": None}
    assert objective_priority(priorities, "premium") == 10
    assert objective_priority(priorities, "batch") == -1
    assert objective_priority(priorities, "unset") == 0
    assert objective_priority(priorities, "unknown") == 0
    assert objective_priority(priorities, None) == 0


def at(day):
    return datetime(2025, 1, day, tzinfo=UTC)


def rule(models, *targets):
    return RewriteRule(tuple(models), tuple(RewriteTarget(t) for t in targets))


def test_exact_match_beats_an_older_catch_all():
    table = RewriteTable(
        [
            ModelRewrite("old-catch-all", at(1), (rule([], "fallback"),)),
            ModelRewrite("newer-exact", at(5), (rule(["llama"], "llama-v2"),)),
        ]
    )
    rng = random.Random(0)
    assert table.resolve("llama", rng) == "llama-v2"
    assert table.resolve("other", rng) == "fallback"


def test_oldest_object_wins_and_first_matching_rule_within_an_object():
    table = RewriteTable(
        [
            ModelRewrite("b-newer", at(3), (rule(["llama"], "from-newer"),)),
            ModelRewrite("a-older", at(2), (rule(["qwen"], "q"), rule(["llama"], "first"), rule(["llama"], "second"))),
        ]
    )
    assert table.resolve("llama", random.Random(0)) == "first"
    assert table.resolve("mistral", random.Random(0)) is None


def test_same_timestamp_ties_break_by_namespace_and_name():
    table = RewriteTable(
        [
            ModelRewrite("zeta", at(1), (rule(["m"], "from-zeta"),), namespace="ns"),
            ModelRewrite("alpha", at(1), (rule(["m"], "from-alpha"),), namespace="ns"),
        ]
    )
    assert table.resolve("m", random.Random(0)) == "from-alpha"


def test_weighted_targets_follow_their_weights():
    table = RewriteTable(
        [ModelRewrite("split", at(1), (RewriteRule(("m",), (RewriteTarget("canary", 1), RewriteTarget("stable", 3))),))]
    )
    rng = random.Random(42)
    counts = Counter(table.resolve("m", rng) for _ in range(8000))
    assert 1700 < counts["canary"] < 2300 and 5700 < counts["stable"] < 6300


def test_unweighted_targets_are_equally_likely():
    table = RewriteTable([ModelRewrite("even", at(1), (rule(["m"], "a", "b"),))])
    rng = random.Random(7)
    counts = Counter(table.resolve("m", rng) for _ in range(4000))
    assert 1800 < counts["a"] < 2200


def test_rewrite_from_object_reads_the_crd_shape():
    rewrite = rewrite_from_object(
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceModelRewrite",
            "metadata": {"name": "r", "namespace": "ns", "creationTimestamp": "2025-03-04T05:06:07Z"},
            "spec": {
                "poolRef": {"name": "pool"},
                "rules": [
                    {
                        "matches": [
                            {"model": {"type": "Exact", "value": "a"}},
                            {"model": {"type": "Exact", "value": "b"}},
                        ],
                        "targets": [{"modelRewrite": "a2", "weight": 10}],
                    },
                    {"targets": [{"modelRewrite": "any"}]},
                ],
            },
        }
    )
    assert rewrite.created == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert rewrite.rules[0] == RewriteRule(("a", "b"), (RewriteTarget("a2", 10),))
    assert rewrite.rules[1].models == ()
    table = RewriteTable([rewrite])
    assert table.resolve("b", random.Random(0)) == "a2"
    assert table.resolve("zzz", random.Random(0)) == "any"


def test_malformed_rewrite_names_the_object():
    with pytest.raises(ValueError, match="'broken'"):
        rewrite_from_object({"metadata": {"name": "broken"}, "spec": {"rules": [{"matches": [{"model": {}}]}]}})
