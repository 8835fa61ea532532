"""`poolgate bench`: one subcommand per benchmark; each prints a table and can write JSON rows."""

from __future__ import annotations

import argparse
import importlib

# benchmark -> (module with configure(parser), one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "picker": ("poolgate.bench.picker", "scheduling decisions per second and latency, request parsing cost"),
    "routing": ("poolgate.bench.routing.cli", "routing quality of pickers side by side on a simulated fleet"),
    "control-plane": ("poolgate.bench.control_plane", "translation time and memory for growing inputs"),
    "overhead": ("poolgate.bench.overhead", "what the picker adds per request through real Envoy: req/s, latency, CPU"),
    "faults": ("poolgate.bench.faults", "fault scenarios on the real local stack: requests lost, p99, recovery"),
    "scrape": ("poolgate.bench.scrape", "the picker's metrics scraping of N endpoints over HTTP: CPU, staleness"),
    "peers": ("poolgate.bench.peers.cli", "poolgate, Envoy alone and the Rust routers side by side on the wall clock"),
}


def add_plot_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The plot options every benchmark that draws takes: `--plots DIR` (where `what` is written) and `--no-plots`."""
    parser.add_argument(
        "--plots", metavar="DIR", default="bench-results", help=f"directory for {what} (default: %(default)s)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write no plot")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Benchmarks that print numbers (and with --json FILE write them as rows)."
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        bench = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(bench)
