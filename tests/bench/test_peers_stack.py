"""`poolgate bench peers` on the real stack (here, since e2e tests do not import the benchmarks): a few seconds of
seeded streaming load on a small fleet, through Envoy alone and through a poolgate profile; the Rust peers only when
.venv-peers is installed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from poolgate.bench.peers.agreement import add_agreement
from poolgate.bench.peers.client import run_load
from poolgate.bench.peers.runner import ROW_FIELDS, Settings, run_all, workload
from poolgate.bench.peers.systems import PEERS, PeersMissing, peer_executable, running_system
from tests.support.stacks import next_block

pytestmark = pytest.mark.xdist_group("e2e-peers")
SHAPE = "prefix-1.5k-out64"


def small(systems: list[str]) -> Settings:
    return Settings(
        shapes=[SHAPE],
        systems=systems,
        load=0.5,
        pods=2,
        duration=8.0,
        warmup_fraction=0.25,
        address_block=next_block(),
    )


def test_envoy_and_a_poolgate_profile_answer_every_request_and_fill_every_column(tmp_path: Path):
    settings = small(["envoy", "poolgate-default"])
    work = workload(SHAPE, settings)
    measured = sum(1 for s in work.sessions if s.start >= settings.warmup)
    assert measured >= 5, "the workload is too small to measure anything"
    rows = run_all(settings, tmp_path)
    assert [row["system"] for row in rows] == ["envoy", "poolgate-default"]
    for row in rows:
        assert row["errors"] == 0 and row["completed"] == measured, row
        assert all(row[field] is not None for field in ROW_FIELDS), row
        assert 0 < row["ttft_p50_s"] <= row["ttft_p90_s"] <= row["ttft_p99_s"], row
        assert 0 <= row["itl_p50_s"] <= row["itl_p90_s"], row  # 0: a starved pod's tokens came in one read
        assert row["requests_per_s"] > 0 and row["output_tokens_per_s"] > 0, row
        assert 0 <= row["prefix_hit_rate"] <= 1 and 1 <= row["pods_per_group"] <= 2, row
        add_agreement(row, work, settings.pods, settings.seed, settings.warmup)
        assert row["virtual_ttft_p90_s"] > 0 and row["p90_ratio"] > 0, row
    # the profile's prefix scorer sends a repeated system prompt back to the pod that has it: the pods' own
    # counters see hits
    assert rows[1]["prefix_hit_rate"] > 0, rows[1]


def peers_installed() -> None:
    try:
        for peer in PEERS:
            peer_executable(peer)
    except PeersMissing as missing:
        pytest.skip(f"opt-in: {missing}")


def test_the_peer_routers_answer_and_vllm_router_routes_by_prefix(tmp_path: Path):
    peers_installed()
    settings = small(list(PEERS))
    rows = run_all(settings, tmp_path)
    assert [row["system"] for row in rows] == list(PEERS)
    for row in rows:
        assert row["errors"] == 0 and row["completed"] > 0 and row["prefix_hit_rate"] is not None, row
    # vllm-router's cache_aware keys its prefix index on the token ids of the simulator's render endpoint: without
    # them every decision is `missing_tokens` and requests are spread round robin
    work = workload(SHAPE, settings)
    with running_system("vllm-router", 2, tmp_path / "again", next_block()) as running:
        asyncio.run(run_load(running.url, work, drain=30.0))
        assert running.metrics_url is not None
        metrics = httpx.get(running.metrics_url, timeout=10.0).text
    hits = re.search(r'prefix_routing_decisions_total\{[^}]*outcome="prefix_hit"[^}]*\} (\d+)', metrics)
    assert hits is not None and int(hits.group(1)) > 0, metrics[:2000]
