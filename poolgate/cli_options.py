"""Command-line options that `poolgate translate` and `poolgate up` share, defined once."""

from __future__ import annotations

import argparse


def add_object_files(parser: argparse.ArgumentParser) -> None:
    """`-f/--file FILE` (repeatable, required): the YAML files of objects, into `args.files`."""
    parser.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="YAML file of objects (repeatable; multi-document files and kind: List are read)",
    )


def add_body_mode(parser: argparse.ArgumentParser) -> None:
    """`--body-mode duplex|buffered`: how Envoy streams request bodies to the pickers."""
    parser.add_argument(
        "--body-mode",
        choices=["duplex", "buffered"],
        default="duplex",
        help="how Envoy streams request bodies to the pickers (default: duplex = FULL_DUPLEX_STREAMED)",
    )


def add_picker_tls(parser: argparse.ArgumentParser, how: str) -> None:
    """`--picker-tls/--no-picker-tls` (default on): Envoy calls the pickers over TLS; `how` says what checks it."""
    parser.add_argument("--picker-tls", action=argparse.BooleanOptionalAction, default=True, help=how)
