"""Child processes on loopback, for `poolgate up`, the benchmarks and the tests: each runs in its own process group
with its output in a log file, is checked for readiness, and is stopped with SIGTERM then SIGKILL, never left behind.

    supervisor = Supervisor(log_dir)
    supervisor.reconcile({"picker": Spec((*POOLGATE, "picker", ...), ready_at=("127.0.1.2", 9002))})
    ...
    supervisor.stop_all()
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

POOLGATE = (sys.executable, "-m", "poolgate.cli")  # the poolgate CLI of this installation, under this Python


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


def port_holder(host: str, port: int) -> str | None:
    """The process (`pid N: command line`) listening on host:port, when /proc tells (Linux); else None."""
    ipv4 = socket.inet_aton(host)[::-1].hex().upper()  # /proc/net/tcp's spelling: little-endian hex
    wanted = {
        f"{address}:{port:04X}"
        for address in (ipv4, "00000000", "0000000000000000FFFF0000" + ipv4, "0" * 32)  # also v4-mapped IPv6, any
    }
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[1] in wanted:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {proc.name}: {command}"
        except OSError:
            continue
    return None


def check_port_free(host: str, port: int) -> None:
    """Raise RuntimeError naming the port and, when it can tell, the process holding it, if something listens on
    host:port (a listener with SO_REUSEPORT would otherwise share it and split the connections)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
            return
        except OSError as error:
            holder = port_holder(host, port)
            held = f" by {holder}" if holder else ""
            raise RuntimeError(f"listener port {host}:{port} is already in use{held} ({error.strerror})") from None


class StateLock:
    """An exclusive lock on a state directory, held while one `poolgate up` runs from it."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock; RuntimeError naming the holder's pid if another running process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open while the lock is held, closed in release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RuntimeError(
                f"state directory {self.path.parent} is in use by another poolgate up (pid {holder}); "
                "stop it or use another --state-dir"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> None:
    """Poll `predicate()` until it is true; TimeoutError naming `message` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{message} not reached after {timeout} s")


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent(parent: int) -> Callable[[], None]:
    """What a child runs between fork and exec so that it is killed when the process that started it dies, even by
    SIGKILL or the OOM killer (its own process group shields it from signals sent to the parent's). The signal follows
    the thread that started the child, so children are started from a thread that lives as long as they do (in
    `poolgate up`, the main thread)."""

    def arrange() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arrange


class Process:
    """A child process in its own process group, its combined output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - held open for the child's lifetime, closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),  # only prctl and getppid: no locks
            env={**os.environ, **(env or {})},
        )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def send_signal(self, signum: int) -> None:
        """Send a signal to the process's whole group."""
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Signal the whole group and wait for the process to exit (SIGKILL after 10 s)."""
        self.send_signal(signum)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.popen.wait()
        self._log.close()

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds (and whatever else is left in the group); the exit code."""
        if self.running:
            self.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.popen.returncode


def wait_for_port(host: str, port: int, timeout: float = 20.0, process: Process | None = None) -> None:
    """Wait until host:port accepts connections; fails with the process's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and not process.running:
            raise RuntimeError(
                f"{process.name} exited with code {process.popen.returncode}; see "
                f"{process.log_path}:\n{process.output()[-3000:]}"
            )
        time.sleep(0.02)
    output = f"; see {process.log_path}:\n{process.output()[-3000:]}" if process is not None else ""
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s{output}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def wait_for_health(host: str, port: int, path: str, timeout: float = 20.0, process: Process | None = None) -> None:
    """Wait until GET http://host:port<path> answers 200; fails with the process's output if it exits or times out."""
    url = f"http://{host}:{port}{path}"
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if process is not None and not process.running:
            raise RuntimeError(
                f"{process.name} exited with code {process.popen.returncode}; see "
                f"{process.log_path}:\n{process.output()[-3000:]}"
            )
        if time.monotonic() > deadline:
            output = f"; see {process.log_path}:\n{process.output()[-3000:]}" if process is not None else ""
            raise TimeoutError(f"{url} does not answer 200 after {timeout:.0f} s{output}")
        time.sleep(0.25)


@dataclass(frozen=True)
class Spec:
    """How to run one child: its command line and the TCP address that answers once it is ready."""

    argv: tuple[str, ...]
    ready_at: tuple[str, int] | None = None
    env: tuple[tuple[str, str], ...] = field(default=())
    health_path: str | None = None  # ready only once GET http://ready_at<health_path> answers 200
    ready_timeout: float | None = None  # seconds to wait for readiness, instead of the supervisor's default
    wave: int = 0  # started once every child of a lower wave started with it is ready


class Supervisor:
    """Named children, reconciled towards a desired set of specs."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.children: dict[str, Process] = {}
        self.specs: dict[str, Spec] = {}
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, spec: Spec) -> Process:
        """Start one child (its output goes to `<log_dir>/<name>.log`, slashes replaced)."""
        process = Process(name, spec.argv, self.log_dir / f"{name.replace('/', '_')}.log", dict(spec.env))
        self.children[name] = process
        self.specs[name] = spec
        return process

    def reconcile(self, desired: dict[str, Spec], ready_timeout: float = 30.0) -> list[str]:
        """Stop children no longer desired or whose spec changed, start the missing ones wave by wave (a wave once
        the lower ones are ready) and wait until they are ready. Returns the names started."""
        for name in [n for n in self.children if desired.get(n) != self.specs[n]]:
            self.stop(name)
        started = [name for name in desired if name not in self.children]
        for wave in sorted({desired[name].wave for name in started}):
            batch = [name for name in started if desired[name].wave == wave]
            for name in batch:
                self.start(name, desired[name])
            for name in batch:
                self.wait_ready(name, ready_timeout)
        return started

    def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        spec, process = self.specs[name], self.children[name]
        timeout = spec.ready_timeout or timeout
        if spec.ready_at is None:
            return
        if spec.health_path is None:
            wait_for_port(*spec.ready_at, timeout=timeout, process=process)
        else:
            wait_for_health(*spec.ready_at, spec.health_path, timeout=timeout, process=process)

    def restart_exited(self) -> list[str]:
        """Start again every child that exited (a crash, or a fault injected on purpose)."""
        restarted = [name for name, child in self.children.items() if not child.running]
        for name in restarted:
            self.children.pop(name).kill()
            self.start(name, self.specs[name])
        return restarted

    def stop(self, name: str) -> None:
        self.children.pop(name).stop()
        self.specs.pop(name)

    def stop_all(self) -> None:
        for name in list(self.children):
            self.stop(name)
