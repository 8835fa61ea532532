"""Real processes on loopback for integration tests: free ports, readiness waits, and processes that never outlive
the test (each runs in its own process group, killed with SIGKILL when the test ends, whatever happened).

    with Processes(tmp_path) as procs:
        port = free_port("127.0.1.2")
        picker = procs.start("picker", [sys.executable, "-m", "poolgate.cli", "picker", ...])
        wait_for_port("127.0.1.2", port, process=picker)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

POOLGATE = (sys.executable, "-m", "poolgate.cli")   # the CLI of this checkout, under the test's Python


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Process:
    """A child process started by `Processes.start`, with its combined output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True, env={**os.environ, **(env or {})})

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process's whole group and wait for the process to exit."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self._log.close()

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        if self.running:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        self.kill()
        return self.popen.returncode


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


def wait_for_port(host: str, port: int, timeout: float = 20.0, process: Process | None = None) -> None:
    """Wait until host:port accepts connections; fails with the process's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and not process.running:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.output()[-3000:]}")
        time.sleep(0.02)
    output = f":\n{process.output()[-3000:]}" if process is not None else ""
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s{output}")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition") -> None:
    """Poll `predicate()` until it is true; TimeoutError naming `message` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{message} not reached after {timeout} s")
