"""Real processes on loopback for integration tests (the same helpers `poolgate up` uses), and a collection that
kills every process it started when the test ends, whatever happened.

    with Processes(tmp_path) as procs:
        port = free_port("127.0.1.2")
        picker = procs.start("picker", [*POOLGATE, "picker", ...])
        wait_for_port("127.0.1.2", port, process=picker)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from poolgate.up.processes import POOLGATE, Process, free_port, port_open, wait_for_port, wait_until

__all__ = ["POOLGATE", "Process", "Processes", "free_port", "port_open", "wait_for_port", "wait_until"]


class Processes:
    """Starts processes and kills every one of them (and their children) on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.started: list[Process] = []

    def start(self, name: str, argv: Sequence[str], env: dict | None = None) -> Process:
        """Start a process in its own group; its output goes to `<log_dir>/<name>.log`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        process = Process(name, argv, self.log_dir / f"{name}.log", env)
        self.started.append(process)
        return process

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info) -> None:
        for process in reversed(self.started):
            process.kill()
