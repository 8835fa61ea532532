"""One case of the peers benchmark (a workload shape routed by one system) on the wall clock, and its row.

The shape's fleet capacity comes from the routing benchmark's analytic model (`oracle.fleet_capacity`, the
simulator's default latency parameters); the arrival rate is load x capacity, ramping up linearly during the
warm-up (the first `warmup_fraction` of the duration), as in the routing benchmark. Requests that arrive during
the warm-up load the fleet and are not measured. The prefix hit rate is the fleet's own: the sum over pods of the
`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries` counters on /metrics, read at the end of the warm-up and
after the last answer.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from poolgate.bench.peers.client import run_load
from poolgate.bench.peers.shapes import SHAPES
from poolgate.bench.peers.systems import SYSTEMS, running_system
from poolgate.bench.routing.fleet import RequestRecord
from poolgate.bench.routing.oracle import fleet_capacity
from poolgate.bench.routing.results import summarize
from poolgate.bench.routing.workloads import Workload
from simulator import ServerConfig
from simulator.request import weighted_percentile

ROW_FIELDS = (
    "shape",
    "system",
    "load",
    "rate",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "itl_p50_s",
    "itl_p90_s",
    "requests_per_s",
    "output_tokens_per_s",
    "completed",
    "errors",
    "unfinished",
    "prefix_hit_rate",
    "pods_per_group",
    "load_1m",
)
_COUNTER = re.compile(rb"^vllm:prefix_cache_(hits|queries)_total(?:\{[^}]*\})? ([0-9.e+-]+)$", re.M)


@dataclass(frozen=True)
class Settings:
    """What one peers run covers."""

    shapes: Sequence[str]
    systems: Sequence[str] = SYSTEMS
    load: float = 0.8
    pods: int = 8
    duration: float = 60.0  # seconds of arrivals per case
    warmup_fraction: float = 0.2
    seed: int = 0
    address_block: int = 230

    def __post_init__(self) -> None:
        unknown = [s for s in self.shapes if s not in SHAPES]
        if unknown or not self.shapes:
            raise ValueError(f"shapes must be among {', '.join(SHAPES)}; got {', '.join(unknown) or 'none'}")
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown or not self.systems:
            raise ValueError(f"systems must be among {', '.join(SYSTEMS)}; got {', '.join(unknown) or 'none'}")
        if self.load <= 0:
            raise ValueError("load must be a positive fraction of the fleet's capacity")
        if not 1 <= self.pods <= 64:
            raise ValueError("pods must be within 1..64")
        if self.duration <= 0 or not 0 <= self.warmup_fraction < 1:
            raise ValueError("duration must be positive and the warm-up fraction within [0, 1)")

    @property
    def warmup(self) -> float:
        return self.duration * self.warmup_fraction

    @property
    def drain(self) -> float:
        """Seconds to wait for answers after the last arrival."""
        return max(30.0, self.duration / 2)


def capacity(shape: str, settings: Settings) -> float:
    """The fleet's capacity for a shape in requests per second (the routing benchmark's analytic model)."""
    full_rate_seconds = settings.duration * (1 - settings.warmup_fraction / 2)
    spec = SHAPES[shape].spec()
    return fleet_capacity(spec, settings.seed, settings.pods, ServerConfig(), duration=full_rate_seconds)


def workload(shape: str, settings: Settings) -> Workload:
    """The request sequence of a shape at the settings' load: the same for every system."""
    rate = settings.load * capacity(shape, settings)
    return SHAPES[shape].spec().build(rate, settings.seed, settings.duration, settings.warmup)


async def prefix_counters(pods: Sequence[str]) -> tuple[float, float]:
    """(hits, queries) of the prefix cache summed over the pods' /metrics."""
    hits = queries = 0.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for pod in pods:
            async with session.get(f"http://{pod}/metrics") as response:
                text = await response.read()
            for kind, value in _COUNTER.findall(text):
                if kind == b"hits":
                    hits += float(value)
                else:
                    queries += float(value)
    return hits, queries


def run_case(shape: str, system: str, settings: Settings, directory: Path, work: Workload) -> dict:
    """Start `system` on a fresh fleet, send the shape's requests, stop everything; returns the row."""
    with running_system(system, settings.pods, directory, settings.address_block) as running:

        async def measure() -> tuple[list[RequestRecord], tuple[float, float], tuple[float, float]]:
            marks: dict[str, tuple[float, float]] = {}

            async def mark() -> None:
                marks["start"] = await prefix_counters(running.pods)

            records = await run_load(running.url, work, settings.drain, at={settings.warmup: mark})
            return records, marks["start"], await prefix_counters(running.pods)

        records, before, after = asyncio.run(measure())
    return row(shape, system, settings, work, records, before, after)


def pods_per_group(work: Workload, records: list[RequestRecord]) -> float | None:
    """How many pods served each shared system prompt, on average over the prompts (None without shared prompts
    or when the system does not report the serving pod)."""
    pods: dict[str, set[str]] = {}
    for record in records:
        first = work.sessions[record.session].turns[0].body["messages"][0]
        if first["role"] == "system" and record.endpoint:
            pods.setdefault(first["content"], set()).add(record.endpoint)
    return round(sum(map(len, pods.values())) / len(pods), 2) if pods else None


def row(
    shape: str,
    system: str,
    settings: Settings,
    work: Workload,
    records: list[RequestRecord],
    before: tuple[float, float],
    after: tuple[float, float],
) -> dict:
    """The result row of one case (fields `ROW_FIELDS`)."""
    base = summarize(
        records,
        workload=shape,
        picker=system,
        seed=settings.seed,
        rate=work.rate,
        load=settings.load,
        warmup_end=settings.warmup,
        window_end=settings.duration,
    )
    measured = [r for r in records if r.arrival >= settings.warmup and r.outcome == "ok"]
    gaps = [(gap, count) for r in measured for gap, count in r.itl_runs]
    last_answer = max((r.finished_at for r in measured if r.finished_at is not None), default=settings.warmup)
    queries = after[1] - before[1]
    unfinished = sum(1 for r in records if r.arrival >= settings.warmup and r.outcome == "unfinished")
    itl_p90 = weighted_percentile(gaps, 90)
    return {
        "shape": shape,
        "system": system,
        "load": settings.load,
        "rate": base["rate"],
        "ttft_p50_s": base["ttft_p50_s"],
        "ttft_p90_s": base["ttft_p90_s"],
        "ttft_p99_s": base["ttft_p99_s"],
        "itl_p50_s": base["itl_p50_s"],
        "itl_p90_s": None if itl_p90 is None else round(itl_p90, 4),
        "requests_per_s": round(len(measured) / max(last_answer - settings.warmup, 1e-9), 2),
        "output_tokens_per_s": base["output_tokens_per_s"],
        "completed": base["completed"],
        "errors": base["errors"] + unfinished,
        "unfinished": unfinished,
        "prefix_hit_rate": round((after[0] - before[0]) / queries, 4) if queries else None,
        "pods_per_group": pods_per_group(work, measured),
        "load_1m": round(os.getloadavg()[0], 1),
    }


def run_all(
    settings: Settings,
    directory: Path,
    done: Callable[[str, str, dict], None] | None = None,
    before: Callable[[str, str], None] | None = None,
) -> list[dict]:
    """Every case, shape by shape, the systems interleaved within each shape (their order rotating from one
    shape to the next, so that a noisy minute does not always hit the same system). A system that fails to start
    gets a row with only `failed` (the reason) and `seconds`."""
    rows = []
    for index, shape in enumerate(settings.shapes):
        work = workload(shape, settings)
        systems = list(settings.systems)
        systems = systems[index % len(systems) :] + systems[: index % len(systems)]
        for system in systems:
            if before is not None:
                before(shape, system)
            started = time.monotonic()
            try:
                result = run_case(shape, system, settings, directory, work)
            except RuntimeError as error:  # a system that does not start: its row says why, the others still run
                result = {"shape": shape, "system": system, "load": settings.load, "failed": str(error)}
            result["seconds"] = round(time.monotonic() - started, 1)
            rows.append(result)
            if done is not None:
                done(shape, system, result)
    order = {name: i for i, name in enumerate(settings.systems)}
    return sorted(rows, key=lambda r: (settings.shapes.index(r["shape"]), order[r["system"]]))
