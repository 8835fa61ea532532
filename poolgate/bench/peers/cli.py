"""`poolgate bench peers`: poolgate's profiles, Envoy alone and the Rust routers side by side on the wall clock."""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

from poolgate.bench.cli import add_plot_arguments
from poolgate.bench.peers.shapes import QUICK_SHAPES, SHAPES
from poolgate.bench.peers.systems import PEERS, SYSTEMS, PeersMissing, peer_executable

DURATION, QUICK_DURATION = 60.0, 30.0
TABLE_COLUMNS = (
    "system",
    "ttft_p50_s",
    "ttft_p90_s",
    "ttft_p99_s",
    "itl_p50_s",
    "itl_p90_s",
    "requests_per_s",
    "output_tokens_per_s",
    "errors",
    "unfinished",
    "prefix_hit_rate",
    "pods_per_group",
    "virtual_ttft_p90_s",
    "p90_ratio",
    "load_1m",
)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Route the same seeded request sequence through poolgate's profiles (Envoy + picker), Envoy without a "
        "picker and the Rust routers sglang-router and vllm-router (cache_aware, from `make peers-venv`), one "
        "system at a time, each on a fresh fleet of simulated vLLM pods (latency model on), on the wall clock. "
        "Streaming chat requests arrive open-loop (Poisson) at a fraction of the fleet's capacity. Rows: TTFT, "
        "inter-token latency, throughput, errors, the pods' prefix-cache hit rate, and for the systems the "
        "virtual-clock routing benchmark models, its TTFT p90 on the same workload. See docs/benchmarks.md.",
        100,
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "shapes:\n" + "\n".join(f"  {name:19} {shape.spec().description}" for name, shape in SHAPES.items())
    parser.add_argument("--shapes", help=f"comma-separated shapes (default: all; --quick: {','.join(QUICK_SHAPES)})")
    parser.add_argument(
        "--systems",
        help=f"comma-separated systems (default: {','.join(SYSTEMS)}; the peers only when .venv-peers exists)",
    )
    parser.add_argument("--load", type=float, default=0.8, help="fraction of fleet capacity (default: %(default)s)")
    parser.add_argument("--pods", type=int, default=8, help="simulated pods (default: %(default)s)")
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds of arrivals per case (default: {DURATION:g}; --quick: {QUICK_DURATION:g})",
    )
    parser.add_argument(
        "--warmup", type=float, default=0.2, help="fraction of each case not measured, rate ramping up (default: 0.2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the request sequences (default: %(default)s)")
    parser.add_argument(
        "--quick", action="store_true", help=f"shapes {', '.join(QUICK_SHAPES)}, {QUICK_DURATION:g} s per case"
    )
    parser.add_argument("--address-block", type=int, default=230, help="loopback block 127.B.x.y (default: 230)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    add_plot_arguments(parser, "peers.png")
    parser.set_defaults(run=run)


def default_systems() -> tuple[list[str], list[str]]:
    """(every system whose software is here, the peers left out because .venv-peers is absent)."""
    missing = []
    for peer in PEERS:
        try:
            peer_executable(peer)
        except PeersMissing:
            missing.append(peer)
    return [s for s in SYSTEMS if s not in missing], missing


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from poolgate.bench.peers.agreement import add_agreement
    from poolgate.bench.peers.plots import write_plot
    from poolgate.bench.peers.runner import Settings, capacity, run_all, workload
    from poolgate.bench.report import output_console, print_table, write_json

    errors = Console(stderr=True)
    systems = _names(args.systems) if args.systems else None
    if systems is None:
        systems, missing = default_systems()
        if missing:
            errors.print(f"[yellow]left out {', '.join(missing)}:[/yellow] .venv-peers is absent (make peers-venv)")
    try:
        for system in systems:
            if system in PEERS:
                peer_executable(system)
        settings = Settings(
            shapes=_names(args.shapes) if args.shapes else list(QUICK_SHAPES if args.quick else SHAPES),
            systems=systems,
            load=args.load,
            pods=args.pods,
            duration=args.duration or (QUICK_DURATION if args.quick else DURATION),
            warmup_fraction=args.warmup,
            seed=args.seed,
            address_block=args.address_block,
        )
    except (PeersMissing, ValueError) as error:
        errors.print(f"[red]error:[/red] {error}")
        return 2

    started = time.monotonic()
    total = len(settings.shapes) * len(settings.systems)
    count = 0

    def before(shape: str, system: str) -> None:
        errors.log(f"[{count + 1}/{total}] {shape}: {system} ...")

    def done(shape: str, system: str, row: dict) -> None:
        nonlocal count
        count += 1
        if "failed" in row:
            errors.log(f"[{count}/{total}] {shape}: {system}: [red]failed[/red]: {row['failed']}")
            return
        add_agreement(row, workload(shape, settings), settings.pods, settings.seed, settings.warmup)
        errors.log(
            f"[{count}/{total}] {shape}: {system}: TTFT p90 {row['ttft_p90_s']} s, hit rate "
            f"{row['prefix_hit_rate']}, errors {row['errors']}, load {row['load_1m']} ({row['seconds']} s)"
        )

    with tempfile.TemporaryDirectory(prefix="poolgate-peers-") as tmp:
        rows = run_all(settings, Path(tmp), done=done, before=before)
    out = output_console()
    for shape in settings.shapes:
        print_table(
            f"{shape}: {settings.load:g} x capacity {capacity(shape, settings):.2f} req/s, {settings.pods} pods, "
            f"{settings.duration:g} s (wall clock)",
            [row for row in rows if row["shape"] == shape],
            TABLE_COLUMNS,
            out,
        )
    if args.json:
        write_json(args.json, rows)
    if not args.no_plots and rows:
        errors.print(f"wrote {write_plot(rows, args.plots)}")
    errors.print(f"{total} cases in {time.monotonic() - started:.0f} s")
    return 1 if any("failed" in row for row in rows) else 0
