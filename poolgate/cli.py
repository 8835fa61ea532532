"""The `poolgate` command: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module that defines it, one-line help). Each module has `configure(parser)` that adds its
# arguments and sets `parser.set_defaults(run=callable)`; `run(args)` returns the exit code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "translate": ("poolgate.translate_cli", "translate Gateway API / InferencePool objects into Envoy configuration"),
    "up": ("poolgate.up.cli", "run the whole gateway on this machine: Envoy, pickers and model servers"),
    "bench": (
        "poolgate.bench.cli",
        "benchmarks that print numbers: picker, routing, overhead, control-plane, faults, scrape, peers",
    ),
    "sim": ("simulator.cli", "serve simulated vLLM-compatible model servers (no GPU) on loopback addresses"),
    "picker": ("picker.cli", "run the endpoint picker (Envoy ext_proc service)"),
    "hooks": ("hooks.cli", "serve the Metacontroller webhooks with gunicorn"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="poolgate",
        description="poolgate makes Envoy an inference gateway for the Gateway API Inference Extension.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(sub)
    return parser


def _version() -> str:
    from poolgate import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
