"""The agreement check between the wall clock and the routing benchmark's virtual clock (issue 18, point 2).

For a system that the routing benchmark also models, the same workload (same shape, seed, rate, duration and
warm-up) runs through `poolgate.bench.routing.fleet.simulate` with the same scheduling profile, and the row gains
`virtual_ttft_p90_s` and `p90_ratio` (wall clock / virtual clock). The virtual clock can be trusted for the wide
sweeps where the ratio stays within 1 +- 0.25.
"""

from __future__ import annotations

from poolgate.bench.routing.fleet import simulate
from poolgate.bench.routing.pickers import build_picker
from poolgate.bench.routing.results import summarize
from poolgate.bench.routing.workloads import Workload
from simulator import ServerConfig

# peers system -> routing benchmark picker that models it
MODELLED = {"poolgate-default": "poolgate", "llmd-default": "llmd-default", "envoy": "least-request"}
TOLERANCE = 0.25


def virtual_row(system: str, work: Workload, pods: int, seed: int, warmup: float) -> dict:
    """The routing benchmark's row for the same workload routed by the picker modelling `system`."""
    picker = MODELLED[system]
    result = simulate(work, build_picker(picker, seed), pods, ServerConfig())
    return summarize(
        result.records,
        workload=work.name,
        picker=picker,
        seed=seed,
        rate=work.rate,
        load=0.0,
        warmup_end=warmup,
        window_end=work.duration,
    )


def add_agreement(row: dict, work: Workload, pods: int, seed: int, warmup: float) -> None:
    """Add `virtual_ttft_p90_s` and `p90_ratio` to a wall-clock row of a modelled system (others are left as
    they are)."""
    if row["system"] not in MODELLED:
        return
    virtual = virtual_row(row["system"], work, pods, seed, warmup)["ttft_p90_s"]
    row["virtual_ttft_p90_s"] = virtual
    wall = row["ttft_p90_s"]
    row["p90_ratio"] = round(wall / virtual, 3) if wall is not None and virtual else None


def agrees(row: dict) -> bool | None:
    """Whether a row's wall-clock p90 is within the tolerance of the virtual clock's (None when not checked)."""
    ratio = row.get("p90_ratio")
    return None if ratio is None else abs(ratio - 1) <= TOLERANCE
