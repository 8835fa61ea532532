"""`poolgate bench routing`: routing quality of pickers side by side, on a simulated fleet on a virtual clock."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import time
from pathlib import Path

from poolgate.bench.cli import add_plot_arguments
from poolgate.bench.routing import (
    DURATION,
    LOADS,
    PEER_DELAY,
    QUICK_DURATION,
    QUICK_LOADS,
    SCRAPE_INTERVAL,
    WARMUP_FRACTION,
)
from poolgate.bench.routing.pickers import DEFAULT_PICKERS, PICKERS
from poolgate.bench.routing.results import MEASURES, SEED_FIELDS, over_seeds
from poolgate.bench.routing.workloads import WORKLOADS, workload_spec

TABLE_COLUMNS = ("load", "rate", "picker", *MEASURES)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _listed(values) -> str:
    return ",".join(f"{value:g}" for value in values)


def _loads(text: str) -> list[float]:
    try:
        return [float(value) for value in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"loads must be numbers, comma-separated: {text!r}") from None


def _token_counts(text: str) -> list[int]:
    try:
        counts = [int(value) for value in _names(text)]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"token counts must be positive integers, comma-separated: {text!r}")
    return counts


def shaped_workloads(names: list[str], prefix_tokens: list[int] | None, output_tokens: list[int] | None) -> list[str]:
    """Each workload once per shape of the given axes it takes (`prefix-heavy` x prompts 1500,6000 x outputs 64:
    `prefix-heavy-p1500-o64`, `prefix-heavy-p6000-o64`); a workload without those axes stays as it is."""
    out: list[str] = []
    for name in names:
        spec = workload_spec(name)
        prompts = prefix_tokens if prefix_tokens and "p" in spec.shape_axes else [None]
        outputs = output_tokens if output_tokens and "o" in spec.shape_axes else [None]
        out.extend(spec.shaped(prompt, output).name for prompt in prompts for output in outputs)
    return list(dict.fromkeys(out))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = textwrap.fill(
        "Route the same workloads through the same simulated vLLM fleet (virtual clock, deterministic) with "
        "several pickers and compare TTFT, inter-token latency, throughput and prefix-cache hits. Load is a "
        "fraction of the fleet's capacity for each workload. See docs/benchmarks.md.",
        100,
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "workloads:\n"
        + "\n".join(f"  {spec.name:13} {spec.description}" for spec in WORKLOADS.values())
        + "\nshapes: -p<N> (prefix-heavy's system prompt tokens) and -o<N> (output cap) name a shaped workload, e.g.\n"
        "  prefix-heavy-p1500-o64; --prefix-tokens/--output-tokens run every combination"
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated workloads (default: %(default)s)"
    )
    parser.add_argument(
        "--prefix-tokens",
        type=_token_counts,
        metavar="N,...",
        help="shape axis: shared system prompt lengths of prefix-heavy, one run each (e.g. 1500,6000)",
    )
    parser.add_argument(
        "--output-tokens",
        type=_token_counts,
        metavar="N,...",
        help="shape axis: output caps of the single-turn workloads, one run each (e.g. 64,256,1000)",
    )
    parser.add_argument(
        "--pickers",
        default=",".join(DEFAULT_PICKERS),
        help=f"comma-separated pickers among {', '.join(PICKERS)} (default: %(default)s)",
    )
    parser.add_argument("--pods", type=int, default=8, help="simulated pods, 1..64 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of workloads and pickers (default: %(default)s)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="run every case at N seeds, --seed .. --seed + N - 1, and print each p90 over the seeds and its ratio "
        "to --against's (default: %(default)s)",
    )
    parser.add_argument(
        "--against",
        metavar="PICKER",
        help="the picker the table over seeds divides by (default: llmd-default when it runs)",
    )
    parser.add_argument(
        "--picker-replicas",
        type=int,
        default=1,
        metavar="N",
        help="picker replicas sharing the traffic in turn, each with its own state, sharing their load "
        "(--peer-delay) (default: %(default)s)",
    )
    parser.add_argument(
        "--peer-delay",
        default=str(PEER_DELAY),
        metavar="SECONDS",
        help="seconds a replica's load announcement takes to reach the other replicas; off: replicas share no "
        "load (default: %(default)s)",
    )
    parser.add_argument(
        "--kv-blocks",
        type=int,
        metavar="N",
        help="KV-cache blocks of 16 tokens per simulated server (default: the simulator's, 28,000)",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=SCRAPE_INTERVAL,
        metavar="SECONDS",
        help="seconds between metric scrapes; 0 scrapes every server right before each pick, perfect state "
        "(default: %(default)s)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--duration",
        type=float,
        help=f"seconds of arrivals per case (default: {DURATION:g}; --quick: {QUICK_DURATION:g})",
    )
    size.add_argument("--requests", type=int, help="requests per case instead of a duration")
    parser.add_argument(
        "--loads",
        type=_loads,
        help=f"fractions of fleet capacity (default: {_listed(LOADS)}; --quick: {_listed(QUICK_LOADS)})",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=WARMUP_FRACTION,
        help="fraction of each case during which the rate ramps up and nothing is measured (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter cases and three loads: the same workloads and pickers in about a minute",
    )
    parser.add_argument("--jobs", type=int, help="processes running cases in parallel (default: one per CPU)")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also compare the profile of an EndpointPickerConfig file as picker NAME (repeatable)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    add_plot_arguments(parser, "the PNG plots, drawn from the first seed's rows")
    parser.set_defaults(run=run)


def _deployment(settings) -> str:
    """What of the picker deployment differs from one replica scraping every 50 ms, for a table title."""
    parts = [f", {settings.picker_replicas} picker replicas"] if settings.picker_replicas > 1 else []
    if settings.picker_replicas > 1:
        delay = settings.peer_delay
        parts.append(" sharing no load" if delay is None else f" sharing their load after {delay * 1000:g} ms")
    if settings.scrape_interval != SCRAPE_INTERVAL:
        interval = settings.scrape_interval
        parts.append(f", scraped every {interval:g} s" if interval else ", scraped before each pick")
    if settings.kv_blocks is not None:
        parts.append(f", {settings.kv_blocks:,} KV blocks per pod")
    return "".join(parts)


def _peer_delay(text: str) -> float | None:
    """`--peer-delay`: seconds, or None for `off`."""
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--peer-delay {text!r} is neither seconds nor off") from None


def _extra_configs(specs: list[str]) -> dict[str, str]:
    from picker.scheduling import ConfigError, load_config

    configs = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise ValueError(f"--config wants NAME=FILE, not {spec!r}")
        text = Path(path).read_text()
        try:
            load_config(text)
        except ConfigError as error:
            raise ValueError(f"--config {name}: {error}") from error
        configs[name] = text
    return configs


def _against(picker: str | None, pickers: list[str]) -> str | None:
    """The picker the table over seeds divides by: the one named, or llmd-default when it runs."""
    if picker is None:
        return "llmd-default" if "llmd-default" in pickers else None
    if picker not in pickers:
        raise ValueError(f"--against {picker!r} is not among the pickers run ({', '.join(pickers)})")
    return picker


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from poolgate.bench.report import output_console, print_table, write_json
    from poolgate.bench.routing.plots import write_plots
    from poolgate.bench.routing.runner import Settings, capacities, cases, run_cases

    errors = Console(stderr=True)
    duration = (
        args.duration
        if args.duration is not None or args.requests is not None
        else (QUICK_DURATION if args.quick else DURATION)
    )
    loads = args.loads or list(QUICK_LOADS if args.quick else LOADS)
    try:
        extra = _extra_configs(args.config)
        settings = Settings(
            workloads=shaped_workloads(_names(args.workloads), args.prefix_tokens, args.output_tokens),
            pickers=list(dict.fromkeys(_names(args.pickers) + list(extra))),  # a --config picker may be listed too
            loads=loads,
            pods=args.pods,
            seed=args.seed,
            duration=duration,
            requests=args.requests,
            warmup_fraction=args.warmup,
            extra_configs=extra,
            picker_replicas=args.picker_replicas,
            peer_delay=_peer_delay(args.peer_delay),
            scrape_interval=args.scrape_interval,
            kv_blocks=args.kv_blocks,
        )
        if args.seeds < 1:
            raise ValueError("--seeds must be at least 1")
        against = _against(args.against, list(settings.pickers))
    except (OSError, ValueError) as error:
        errors.print(f"[red]error:[/red] {error}")
        return 2

    started = time.monotonic()
    seeds = range(settings.seed, settings.seed + args.seeds)
    capacity = {seed: capacities(dataclasses.replace(settings, seed=seed)) for seed in seeds}
    todo = [case for seed in seeds for case in cases(dataclasses.replace(settings, seed=seed), capacity[seed])]
    with Progress(
        TextColumn("[bold]routing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=errors,
    ) as progress:
        task = progress.add_task("", total=len(todo))

        def done(case, row) -> None:
            progress.update(task, advance=1, description=f"{case.workload} load {case.load:g} {case.picker}")

        rows = run_cases(todo, settings, jobs=args.jobs, done=done)

    out = output_console()
    columns = TABLE_COLUMNS if len(seeds) == 1 else ("seed", *TABLE_COLUMNS)
    for workload in settings.workloads:
        rates = " / ".join(f"{capacity[seed][workload]:.2f}" for seed in seeds)
        at_seeds = "" if len(seeds) == 1 else f" at seeds {' / '.join(map(str, seeds))}"
        print_table(
            f"{workload}: capacity {rates} requests/s{at_seeds} ({settings.pods} pods{_deployment(settings)})",
            sorted((row for row in rows if row["workload"] == workload), key=lambda row: (row["load"], row["seed"])),
            columns,
            out,
        )
    if len(seeds) > 1:
        print_table(f"TTFT p90 over seeds {seeds[0]}..{seeds[-1]}", over_seeds(rows, against), SEED_FIELDS, out)
    if args.json:
        write_json(args.json, rows)
    if not args.no_plots:
        for path in write_plots([row for row in rows if row["seed"] == settings.seed], args.plots):
            errors.print(f"wrote {path}")
    errors.print(f"{len(todo)} cases in {time.monotonic() - started:.0f} s")
    return 0
