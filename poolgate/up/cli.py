"""`poolgate up`: run the whole gateway on this machine from Gateway API / Inference Extension YAML files."""

from __future__ import annotations

import argparse

from poolgate import cli_options, logs

DESCRIPTION = """\
Run poolgate's gateway on this machine: real Envoy, one endpoint picker per endpointPickerRef Service, and the model
servers, all on loopback, from the same YAML objects a cluster would hold (Gateway, HTTPRoute, InferencePool,
InferenceObjective, InferenceModelRewrite, Services).

Model servers are either simulated or real:
  - a Deployment (or Pod) whose container runs `poolgate sim ...` becomes simulated pods, one process each, on their
    own loopback address (127.0.0.10, .11, ...) and the container ports;
  - a Pod with status.podIP and a Ready condition is a real server (e.g. vLLM on a GPU box) that Envoy reaches there.
Edits to the files are applied while running (Envoy reloads in place). Ctrl-C stops every process."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    cli_options.add_object_files(parser)
    parser.add_argument(
        "--state-dir",
        default=".poolgate/up",
        metavar="DIR",
        help="where Envoy's configuration, the pickers' objects and every process log go (default: %(default)s)",
    )
    parser.add_argument(
        "--listen-address",
        default="127.0.0.1",
        metavar="IP",
        help="address the Gateway listeners bind (default: %(default)s)",
    )
    parser.add_argument(
        "--address-block",
        type=_block,
        default=0,
        metavar="B",
        help="loopback block of the pods (127.B.0.10, ...) and pickers (127.B.1.2, ...), 0-255, so "
        "that several gateways can run side by side (default: %(default)s)",
    )
    cli_options.add_body_mode(parser)
    cli_options.add_picker_tls(
        parser,
        "the pickers serve gRPC over TLS (self-signed certificates, upstream's default) and Envoy encrypts "
        "its calls to them without checking the certificate; --no-picker-tls: plaintext (default: TLS)",
    )
    parser.add_argument(
        "--picker-cert-dir",
        metavar="DIR",
        help="the pickers serve TLS with DIR/tls.crt and DIR/tls.key, and Envoy checks their "
        "certificate against DIR/ca.crt (or tls.crt itself) and the picker Service's name "
        "(implies --picker-tls)",
    )
    parser.add_argument(
        "--picker-replicas",
        type=_replicas,
        default=1,
        metavar="N",
        help="picker processes per picker Service; Envoy spreads the picker calls over them and stops calling "
        "one that fails (default: %(default)s)",
    )
    parser.add_argument("--no-watch", action="store_true", help="do not reload when the files change")
    parser.add_argument(
        "--exit-after-start",
        action="store_true",
        help="start, print the gateway addresses, answer nothing more and stop (for checks)",
    )
    logs.add_arguments(parser)
    parser.set_defaults(run=run)


def _block(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError("must be within 0..255")
    return value


def _replicas(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError("must be within 1..16")
    return value


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    from pathlib import Path

    from rich.console import Console

    from poolgate.api import InvalidObjects
    from poolgate.up.stack import Stack, StackOptions
    from poolgate.up.summary import Summary

    logs.setup(args.log_level, args.log_format == "json")
    console = Console(stderr=True)
    options = StackOptions(
        state_dir=Path(args.state_dir),
        listener_address=args.listen_address,
        address_block=args.address_block,
        picker_tls=args.picker_tls,
        picker_cert_dir=Path(args.picker_cert_dir) if args.picker_cert_dir else None,
        body_mode="BUFFERED" if args.body_mode == "buffered" else "FULL_DUPLEX_STREAMED",
        picker_replicas=args.picker_replicas,
    )
    stack = Stack(args.files, options)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a supervisor: stop cleanly (children included)
        signal.signal(signum, lambda *_: stop.set())
    try:
        with console.status("starting model servers, pickers and Envoy ..."):
            status = stack.start()
    except InvalidObjects as error:
        for problem in error.problems:
            console.print(f"[red]error:[/red] {problem}", markup=True, highlight=False)
        return 1
    except (RuntimeError, OSError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        return 1
    summary = Summary(stack, console)
    try:
        for gateway, urls in stack.gateway_urls().items():
            for url in urls:
                print(f"Gateway {gateway}: {url}", flush=True)
        summary.print_started(status)
        if args.exit_after_start:
            return 0
        changed = threading.Event()
        if not args.no_watch:
            threading.Thread(target=_watch, args=(args.files, changed, stop), daemon=True).start()
        with summary.live():
            while not stop.is_set():
                if changed.wait(1.0):
                    changed.clear()
                    if _settled(args.files):
                        summary.reloaded(_reload(stack))
                    else:  # still being written: look again
                        changed.set()
                summary.restarted(stack.supervisor.restart_exited())
                summary.refresh()
    finally:
        with console.status("stopping ..."):
            stack.stop()
    return 0


def _reload(stack) -> str | None:
    """Apply edited files; returns an error message (the running gateway is kept) or None."""
    from poolgate.api import InvalidObjects

    try:
        stack.reload()
        return None
    except InvalidObjects as error:
        return "; ".join(str(p) for p in error.problems)
    except (RuntimeError, OSError) as error:
        return str(error)


def _settled(files: list[str], quiet: float = 0.1, limit: float = 2.0) -> bool:
    """Wait until none of the files has changed for `quiet` seconds (at most `limit`). Editors and scripts write in
    steps (truncate, then write): a file read in between is empty or cut short, and may well be valid YAML that
    would tear the running gateway down. False if the files kept changing."""
    import os
    import time

    def snapshot() -> list[tuple[int, int, int] | None]:
        out: list[tuple[int, int, int] | None] = []
        for name in files:
            try:
                stat = os.stat(name)
                out.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
            except OSError:
                out.append(None)
        return out

    deadline = time.monotonic() + limit
    last = snapshot()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = snapshot()
        if now == last:
            return True
        last = now
    return False


def _watch(files: list[str], changed, stop) -> None:
    """Set `changed` whenever one of the files is written or replaced (editors often replace files, so the
    directories are watched and the changes filtered by path)."""
    from pathlib import Path

    from watchfiles import watch

    paths = {Path(f).resolve() for f in files}
    directories = {str(p.parent) for p in paths}
    for _ in watch(
        *directories, stop_event=stop, debounce=300, watch_filter=lambda change, path: Path(path).resolve() in paths
    ):
        changed.set()
