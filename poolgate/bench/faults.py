"""`poolgate bench faults`: the fault scenarios of `poolgate.load.faults` on the real local stack, one row each."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from poolgate.load.faults import (
    PICKER_ARGS,
    PICKER_KILLED_ARGS,
    config_storm,
    gateway_url,
    metrics_fault,
    metrics_fault_objects,
    model_server_killed,
    model_server_objects,
    picker_fault_objects,
    picker_killed,
    reload_editor,
    soak,
    storm_objects,
)
from poolgate.up.stack import Stack

SCENARIOS = ("picker-killed", "model-server-killed", "metrics-garbage", "config-storm")
COLUMNS = ["scenario", "requests", "ok", "failed", "lost", "p99_ms", "recovered", "recovery_s"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fault scenarios on the real local stack (Envoy, pickers, simulated pods on loopback): "
        "a picker killed (FailOpen and FailClose pools), a model server killed, a pod's /metrics "
        "answering garbage, 100 rapid configuration edits; --soak adds a long steady run. Each "
        "row: requests, ok, failed, lost (failures the gateway promises not to have), p99, "
        "whether it recovered by itself. See docs/reliability.md."
    )
    parser.add_argument("--quick", action="store_true", help="8 s per scenario instead of 30 (under 3 minutes)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second per load (default: 40)")
    parser.add_argument(
        "--soak",
        action="store_true",
        help="also run the soak (POOLGATE_SOAK_MINUTES, default 30 minutes) and report the picker's "
        "RSS and file descriptor growth",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from poolgate.bench.report import output_console, print_table, write_json

    console = Console(stderr=True)
    seconds = 8.0 if args.quick else 30.0
    soak_seconds = float(os.environ.get("POOLGATE_SOAK_MINUTES", "30")) * 60
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="poolgate-faults-") as tmp, console.status("starting ...") as status:
        work = Path(tmp)

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        def scenario(
            name: str, objects: list[dict], block: int, body: Callable, picker_args: tuple[str, ...] = PICKER_ARGS
        ) -> None:
            progress(f"{name}: starting the stack")
            with Stack.from_objects(objects, work, block, picker_args=picker_args) as stack:
                progress(f"{name}: running")
                results = body(stack)
            for result in results if isinstance(results, list) else [results]:
                rows.append(result.row)
                console.log(result.row)

        scenario(
            "picker-killed",
            picker_fault_objects(),
            241,
            lambda s: picker_killed(s, seconds, args.rate, progress),
            picker_args=PICKER_KILLED_ARGS,
        )
        scenario(
            "model-server-killed",
            model_server_objects(),
            242,
            lambda s: model_server_killed(s, seconds, args.rate, progress),
        )
        scenario(
            "metrics-garbage",
            metrics_fault_objects(),
            243,
            lambda s: metrics_fault(s, "garbage", seconds, args.rate, progress),
        )
        scenario(
            "config-storm",
            storm_objects(0, 0),
            244,
            lambda s: config_storm(gateway_url(s), reload_editor(s), 100, args.rate, progress=progress),
        )
        if args.soak:
            scenario("soak", storm_objects(0, 0), 245, lambda s: soak(s, soak_seconds, args.rate, progress))
    out = output_console()
    print_table("faults on the local stack", rows, COLUMNS, out)
    if args.soak:
        print_table(
            "soak",
            [r for r in rows if r["scenario"] == "soak"],
            [
                "scenario",
                "seconds",
                "requests",
                "failed",
                "p99_ms",
                "rss_mib",
                "rss_growth_pct",
                "fds",
                "fd_growth_pct",
            ],
            out,
        )
    if args.json:
        write_json(args.json, rows)
    return 0 if all(r["lost"] == 0 and r["recovered"] is not False for r in rows) else 1
