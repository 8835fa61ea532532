"""The routing benchmark's cases (workload x load x picker) and running them, in parallel, deterministically.

Load is a fraction of the fleet's capacity for the workload (`oracle.fleet_capacity`); the arrival rate of a case
is load x capacity. The rate ramps up linearly from 0 during the warm-up window (the first `warmup_fraction` of the
duration), so that caches fill without a cold-start backlog, and stays at the full rate while requests are
measured. Every case builds its own fleet, pool and picker from the seed, so a case's row does not depend
on which process ran it or in which order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from poolgate.bench.routing import DURATION, LOADS, PEER_DELAY, SCRAPE_INTERVAL, WARMUP_FRACTION
from poolgate.bench.routing.fleet import ServerPrompts, simulate
from poolgate.bench.routing.oracle import fleet_capacity, oracle_run, pooled_run
from poolgate.bench.routing.pickers import BOUNDS, DEFAULT_PICKERS, ORACLE, PICKERS, POOLED, build_router
from poolgate.bench.routing.results import summarize
from poolgate.bench.routing.workloads import WORKLOADS, Workload, workload_spec
from simulator import ServerConfig


@dataclass(frozen=True)
class Settings:
    """What one benchmark run covers."""

    workloads: Sequence[str] = tuple(WORKLOADS)
    pickers: Sequence[str] = DEFAULT_PICKERS
    loads: Sequence[float] = LOADS
    pods: int = 8
    seed: int = 0
    duration: float | None = DURATION  # seconds of arrivals per case, or
    requests: int | None = None  # requests per case
    warmup_fraction: float = WARMUP_FRACTION
    extra_configs: dict[str, str] = field(default_factory=dict)  # picker name -> EndpointPickerConfig YAML
    picker_replicas: int = 1  # picker replicas sharing each case's traffic (see fleet.simulate)
    peer_delay: float | None = PEER_DELAY  # seconds for the replicas' load announcements (None: no exchange)
    scrape_interval: float = SCRAPE_INTERVAL  # seconds between scrapes; 0: every server before each pick
    kv_blocks: int | None = None  # KV-cache blocks per server (None: the simulator's default)

    def __post_init__(self) -> None:
        if (self.duration is None) == (self.requests is None):
            raise ValueError("give either a duration or a number of requests")
        for name in self.workloads:
            workload_spec(name)  # an unknown workload or shape is a ValueError naming it
        unknown = [p for p in self.pickers if p not in PICKERS and p not in self.extra_configs]
        if unknown:
            raise ValueError(
                f"unknown picker(s) {', '.join(unknown)}; choose from {', '.join(PICKERS)} "
                "or add one with --config NAME=FILE"
            )
        if not 1 <= self.picker_replicas <= 16:
            raise ValueError("picker replicas must be within 1..16")
        if self.peer_delay is not None and self.peer_delay < 0:
            raise ValueError("the peer delay must be >= 0 (or off)")
        if self.scrape_interval < 0:
            raise ValueError("the scrape interval must be >= 0 (0: before every pick)")
        if self.kv_blocks is not None and self.kv_blocks < 1:
            raise ValueError("kv blocks must be at least 1")
        if not 1 <= self.pods <= 64:
            raise ValueError("pods must be within 1..64")
        if not self.loads or min(self.loads) <= 0:
            raise ValueError("loads must be positive fractions of the fleet's capacity")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError("the warm-up fraction must be within [0, 1)")


@dataclass(frozen=True)
class Case:
    """One run: a workload at one load, routed by one picker."""

    workload: str
    load: float
    rate: float  # requests per second
    duration: float  # seconds of arrivals
    picker: str
    seed: int  # of the workload and the picker


def capacities(settings: Settings) -> dict[str, float]:
    """Each workload's fleet capacity in requests per second for these settings."""
    config = ServerConfig()
    # during the ramp-up the rate averages half the full rate
    full_rate_seconds = None if settings.duration is None else settings.duration * (1 - settings.warmup_fraction / 2)
    return {
        name: fleet_capacity(
            workload_spec(name),
            settings.seed,
            settings.pods,
            config,
            requests=settings.requests,
            duration=full_rate_seconds,
        )
        for name in settings.workloads
    }


def cases(settings: Settings, capacity: dict[str, float]) -> list[Case]:
    """Every case of a run at the settings' seed, in report order."""
    out: list[Case] = []
    for name in settings.workloads:
        for load in settings.loads:
            rate = load * capacity[name]
            if settings.duration is not None:
                duration = settings.duration
            else:
                assert settings.requests is not None  # Settings checks that exactly one of the two is given
                duration = settings.requests / rate / (1 - settings.warmup_fraction / 2)
            out.extend(Case(name, load, rate, duration, picker, settings.seed) for picker in settings.pickers)
    return out


@lru_cache(maxsize=4)
def _workload(name: str, rate: float, seed: int, duration: float, ramp: float) -> tuple[Workload, ServerPrompts]:
    return workload_spec(name).build(rate, seed, duration, ramp), ServerPrompts()


def run_case(case: Case, settings: Settings) -> dict:
    """Simulate one case (or compute it, for the bounds) and return its row; the case's seed, not the settings',
    decides the workload and the picker."""
    warmup = settings.warmup_fraction * case.duration
    workload, prompts = _workload(case.workload, case.rate, case.seed, case.duration, warmup)
    config = ServerConfig() if settings.kv_blocks is None else ServerConfig(num_gpu_blocks=settings.kv_blocks)
    if case.picker == ORACLE:
        result = oracle_run(workload, config, prompts)
    elif case.picker == POOLED:
        result = pooled_run(workload, config, settings.pods, prompts)
    else:
        picker, replicas = build_router(case.picker, case.seed, settings.extra_configs, settings.picker_replicas)
        result = simulate(
            workload,
            picker,
            settings.pods,
            config,
            prompts=prompts,
            replicas=replicas,
            scrape_interval=settings.scrape_interval,
            peer_delay=settings.peer_delay,
        )
    return summarize(
        result.records,
        workload=case.workload,
        picker=case.picker,
        seed=case.seed,
        rate=case.rate,
        load=case.load,
        warmup_end=warmup,
        window_end=case.duration,
    )


def _run_indexed(job: tuple[int, Case, Settings]) -> tuple[int, dict]:
    index, case, settings = job
    return index, run_case(case, settings)


def run_cases(
    all_cases: Sequence[Case],
    settings: Settings,
    jobs: int | None = None,
    done: Callable[[Case, dict], None] | None = None,
) -> list[dict]:
    """Run the cases on `jobs` processes (default: one per CPU); rows come back in case order."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(all_cases)))
    # the heaviest cases (highest load: longest queues) first, so that the processes finish together
    order = sorted(range(len(all_cases)), key=lambda i: (-all_cases[i].load, all_cases[i].picker in BOUNDS, i))
    work = [(i, all_cases[i], settings) for i in order]
    rows: list[dict | None] = [None] * len(all_cases)

    def collect(index: int, row: dict) -> None:
        rows[index] = row
        if done is not None:
            done(all_cases[index], row)

    if jobs == 1:
        for job in work:
            collect(*_run_indexed(job))
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for index, row in pool.imap_unordered(_run_indexed, work):
                collect(index, row)
    return [row for row in rows if row is not None]
