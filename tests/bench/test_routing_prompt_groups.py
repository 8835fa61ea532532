"""Prefill-dominated traffic on the virtual clock: long shared system prompts, 64-token answers, 0.8 of capacity.

A small deterministic case (4 pods, 16 prompt groups, 90 s) of the shape where poolgate-default lost to the
llm-d default on the real stack (issue 18): on the virtual clock its p90 TTFT must stay well below
llmd-default's, with few groups on a second server and nearly llmd-default's prefix hit rate.
"""

from __future__ import annotations

import random

import pytest

from poolgate.bench.routing.fleet import simulate
from poolgate.bench.routing.oracle import fleet_capacity
from poolgate.bench.routing.pickers import build_picker
from poolgate.bench.routing.results import summarize
from poolgate.bench.routing.workloads import MODEL, Turn, WorkloadSpec, chat_body, text
from simulator import ServerConfig

PODS, GROUPS, DURATION, LOAD = 4, 16, 90.0, 0.8
WARMUP = 0.2 * DURATION


def _groups(rng: random.Random):
    systems = [{"role": "system", "content": text(rng, 6000)} for _ in range(GROUPS)]
    while True:
        messages = [rng.choice(systems), {"role": "user", "content": text(rng, 1200)}]
        yield (Turn(chat_body(MODEL, messages, 64), 64),)


@pytest.fixture(scope="module")
def workload():
    spec = WorkloadSpec("prompt-groups", "", _groups)
    capacity = fleet_capacity(spec, 0, PODS, ServerConfig(), duration=DURATION * (1 - WARMUP / DURATION / 2))
    return spec.build(LOAD * capacity, 0, DURATION, ramp=WARMUP)


def run(workload, config):
    records = simulate(workload, config, PODS).records
    row = summarize(
        records, workload="w", picker="p", seed=0, rate=1.0, load=LOAD, warmup_end=WARMUP, window_end=DURATION
    )
    servers: dict[int, set[str]] = {}
    for record in records:
        if record.arrival >= WARMUP and record.endpoint is not None:
            servers.setdefault(record.group, set()).add(record.endpoint)
    return row, max(map(len, servers.values()))


def test_poolgate_default_beats_llmd_default_where_prompts_dominate(workload):
    llmd, _ = run(workload, build_picker("llmd-default", 0))
    poolgate, _ = run(workload, build_picker("poolgate", 0))
    assert llmd["servers_per_group"] == 1.0  # the llm-d default pins every group to one server
    assert poolgate["errors"] == llmd["errors"] == 0 and poolgate["completed"] == llmd["completed"] > 200
    assert poolgate["ttft_p90_s"] <= 0.7 * llmd["ttft_p90_s"]
    assert poolgate["output_tokens_per_s"] >= 0.99 * llmd["output_tokens_per_s"]


def test_poolgate_default_copies_a_group_to_a_second_server_at_most_rarely(workload):
    # a second copy of a busy group lets its requests choose between two servers (what beats llmd-default here);
    # copying groups everywhere would spend the pool's capacity on recomputed prompts
    row, most = run(workload, build_picker("poolgate", 0))
    assert most <= 3 and row["servers_per_group"] <= 1.5
    assert row["prefix_hit_rate"] >= 0.98 * 0.8318  # llmd-default's, with every group on one server
