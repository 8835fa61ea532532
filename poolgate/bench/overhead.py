"""`poolgate bench overhead`: what the endpoint picker adds to a request, on real processes.

A standalone gateway (`poolgate.up.stack.Stack`: real Envoy, real pickers, `poolgate sim --no-latency` pods that
answer at once) serves the same small chat requests (~1 KB, `max_tokens: 1`) three ways:

- `direct`: an InferencePool without endpointPickerRef (Envoy balances by least request; no ext_proc call);
- `picker-duplex`: a pool with a picker, the request body streamed to it FULL_DUPLEX_STREAMED (the default);
- `picker-buffered`: the same with the gateway's body mode BUFFERED (Envoy buffers the body, then calls the picker).

The two picker modes get a gateway each, and so does each picker process count (`workers`). With N > 1 workers
there are N picker processes, each serving its own copy of the pool (same pods), and successive requests go to
successive copies (Host `picked-<i>.bench`): the CPU split Envoy would make across a picker cluster of N endpoints
(round robin per stream), each picker seeing only its share of the in-flight requests. `direct` is measured on the
first gateway, next to its picker mode at each concurrency.

A closed-loop load generator keeps `concurrency` requests in flight over HTTP/1.1 keep-alive connections: this
process's asyncio client (`python`), or `wrk` when asked for and installed. Each row gives requests/s, client-side
p50/p99 latency, the latency added over `direct` at the same concurrency, and CPU milliseconds per request of the
pickers, Envoy, the pods and the generator (utime + stime deltas from /proc/<pid>/stat, or getrusage for wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from poolgate.api.contract import CONTROLLER_NAME, PROFILE_ANNOTATION
from poolgate.bench.cli import add_plot_arguments

MODES = ("direct", "picker-duplex", "picker-buffered")
CONCURRENCIES = (1, 8, 32, 64)
GENERATORS = ("python", "wrk")
# Where the picker sees the response: on a call of its own that Envoy never waits for (poolgate's default), or on
# the picking call, each message answered before Envoy goes on (what a picker that edits responses needs)
RESPONSE_PATHS = ("observed", "inline")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PATH = "/v1/chat/completions"
BODIES = 64  # distinct request bodies, cycled (so prefix-cache scoring sees different prompts)
ANSWER_TIMEOUT = 30.0  # seconds a run may overrun its duration before the gateway counts as hung
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    """What one run measures."""

    modes: Sequence[str] = MODES
    concurrencies: Sequence[int] = CONCURRENCIES
    workers: Sequence[int] = (1, 2)  # picker processes; each count gets its own gateway
    duration: float = 10.0  # measured seconds per row
    warmup: float = 2.0  # seconds of load before each row, not measured
    pods: int = 2
    stream_tokens: int = 0  # 0: one JSON answer; N: an SSE stream of N tokens
    profile: str = "poolgate-default"
    generator: str = "python"
    address_block: int = 250  # loopback block 127.B.x.y of the gateway's processes
    response_path: str = "observed"
    picker_tls: bool = True  # Envoy speaks TLS to the pickers, as `poolgate up` does by default

    def __post_init__(self) -> None:
        if self.response_path not in RESPONSE_PATHS:
            raise ValueError(f"response path must be one of {', '.join(RESPONSE_PATHS)}; got {self.response_path}")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes must be among {', '.join(MODES)}; got {', '.join(unknown) or 'none'}")
        if not self.concurrencies or min(self.concurrencies) < 1:
            raise ValueError("concurrencies must be positive")
        if not self.workers or min(self.workers) < 1:
            raise ValueError("workers must be positive")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError("duration must be positive and warmup not negative")
        if not 1 <= self.pods <= 64:
            raise ValueError("pods must be within 1..64")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}")
        if self.generator == "wrk" and shutil.which("wrk") is None:
            raise ValueError("wrk is not installed (e.g. `apt-get install wrk`); use --generator python")


# --- the gateway ------------------------------------------------------------------------------------------------


def mode_hosts(mode: str, workers: int) -> list[str]:
    """The Host header values that reach a mode: one per picker process (requests cycle through them)."""
    if mode == "direct":
        return ["direct.bench"]
    return [f"picked-{i}.bench" for i in range(workers)]


def bench_objects(workers: int, pods: int, port: int, profile: str) -> list[dict]:
    """The gateway's objects: `pods` simulated pods, the direct pool (no picker) and `workers` copies of a pool of
    the same pods, each with its own picker Service."""
    gw, gie = "gateway.networking.k8s.io/v1", "inference.networking.k8s.io"
    meta = {"namespace": "default"}

    def pool(name: str, picker: str | None) -> dict:
        spec: dict = {"selector": {"matchLabels": {"app": "bench-sim"}}, "targetPorts": [{"number": 8000}]}
        if picker:
            spec["endpointPickerRef"] = {"name": picker, "port": {"number": 9002}, "failureMode": "FailClose"}
        return {
            "apiVersion": f"{gie}/v1",
            "kind": "InferencePool",
            "metadata": {"name": name, **meta, "annotations": {PROFILE_ANNOTATION: profile}},
            "spec": spec,
        }

    def route(name: str) -> dict:
        return {
            "apiVersion": gw,
            "kind": "HTTPRoute",
            "metadata": {"name": name, **meta},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": [f"{name}.bench"],
                "rules": [{"backendRefs": [{"group": gie, "kind": "InferencePool", "name": name}]}],
            },
        }

    out = [
        {
            "apiVersion": gw,
            "kind": "GatewayClass",
            "metadata": {"name": "poolgate"},
            "spec": {"controllerName": CONTROLLER_NAME},
        },
        {
            "apiVersion": gw,
            "kind": "Gateway",
            "metadata": {"name": "gw", **meta},
            "spec": {"gatewayClassName": "poolgate", "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "bench-sim", **meta},
            "spec": {
                "replicas": pods,
                "selector": {"matchLabels": {"app": "bench-sim"}},
                "template": {
                    "metadata": {"labels": {"app": "bench-sim"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "model-server",
                                "image": "ghcr.io/poolgate/poolgate:bench",
                                "args": ["sim", "--model", MODEL, "--no-latency"],
                                "ports": [{"containerPort": 8000}],
                            }
                        ]
                    },
                },
            },
        },
        pool("direct", None),
        route("direct"),
    ]
    for i in range(workers):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"picker-{i}", **meta},
                "spec": {"ports": [{"port": 9002}]},
            }
        )
        out += [pool(f"picked-{i}", f"picker-{i}"), route(f"picked-{i}")]
    return out


def request_bodies(count: int = BODIES, stream_tokens: int = 0, seed: int = 0) -> list[bytes]:
    """`count` distinct OpenAI chat bodies of about 1 KB (a shared system prompt, a different user message each)."""
    import orjson

    rng = random.Random(seed)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "many",
        "small",
        "tokens",
        "stream",
        "past",
        "the",
        "gateway",
    ]
    bodies = []
    for _ in range(count):
        text = " ".join(rng.choice(words) for _ in range(170))[:900]
        body: dict = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
            "max_tokens": stream_tokens or 1,
        }
        if stream_tokens:
            body.update(stream=True, stream_options={"include_usage": True})
        bodies.append(orjson.dumps(body))
    return bodies


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# --- load generators --------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What one generator run measured."""

    generator: str
    requests: int  # answered 200
    errors: int  # other statuses and broken connections
    elapsed: float
    p50_s: float
    p99_s: float
    cpu_s: float  # the generator's own CPU time


def response_end(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """(status, length) of the first complete HTTP/1.1 response at the start of `buffer`; None while incomplete.
    Bodies are framed by content-length or chunked transfer encoding (without trailers), or absent."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    status = int(head[9:12])
    start = head_end + 4
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
    if length is not None:
        end = start + int(length.group(1))
        return (status, end) if len(buffer) >= end else None
    if not re.search(rb"\r\ntransfer-encoding:[^\r]*chunked", head):
        return status, start
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2 + size + 2
        if len(buffer) < position:
            return None
        if size == 0:
            return status, position


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        found = response_end(self.buffer)
        if found is not None and self.waiter is not None:
            status, end = found
            del self.buffer[:end]
            self.waiter.set_result(status)
            self.waiter = None

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None:
            self.waiter.set_exception(ConnectionError("the gateway closed the connection"))
            self.waiter = None

    def send(self, request: bytes) -> asyncio.Future:
        if self.closed:
            raise ConnectionError("the gateway closed the connection")
        if self.transport is None:
            raise ConnectionError("not connected to the gateway yet")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter


async def _closed_loop(
    address: tuple[str, int], requests: list[bytes], concurrency: int, duration: float
) -> tuple[list[float], int, float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    until = time.perf_counter() + duration

    async def client(offset: int) -> None:
        nonlocal errors
        index = offset
        while time.perf_counter() < until:
            transport, connection = await loop.create_connection(_Connection, *address)
            try:
                while time.perf_counter() < until:
                    request = requests[index % len(requests)]
                    index += 1
                    started = time.perf_counter()
                    status = await connection.send(request)
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1
            except ConnectionError:
                errors += 1
            finally:
                transport.close()

    started = time.perf_counter()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(client(i * len(requests) // concurrency) for i in range(concurrency))),
            duration + ANSWER_TIMEOUT,
        )
    except TimeoutError:
        raise RuntimeError(
            f"the gateway at {address[0]}:{address[1]} stopped answering (a request took more "
            f"than {ANSWER_TIMEOUT:.0f} s)"
        ) from None
    return latencies, errors, time.perf_counter() - started


def python_load(address: tuple[str, int], requests: list[tuple[str, bytes]], concurrency: int, duration: float) -> Load:
    """Closed-loop load from this process: `concurrency` connections, each sending the next (host, body) request
    as soon as the previous answer is complete."""
    from poolgate.load.generator import percentile

    raw = [
        (
            f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for host, body in requests
    ]
    before = os.times()
    latencies, errors, elapsed = asyncio.run(_closed_loop(address, raw, concurrency, duration))
    after = os.times()
    return Load(
        "python",
        len(latencies),
        errors,
        elapsed,
        percentile(latencies, 0.5) or 0.0,
        percentile(latencies, 0.99) or 0.0,
        after.user + after.system - before.user - before.system,
    )


_WRK_SCRIPT = """
local requests = {}
for line in io.lines("%s") do
  local host, body = line:match("^([^\\t]*)\\t(.*)$")
  requests[#requests + 1] = wrk.format("POST", "%s", {["Host"] = host, ["Content-Type"] = "application/json"}, body)
end
local index = 0
request = function()
  index = index %% #requests + 1
  return requests[index]
end
"""


def wrk_load(
    address: tuple[str, int], requests: list[tuple[str, bytes]], concurrency: int, duration: float, workdir: Path
) -> Load:
    """The same closed-loop load from `wrk` (one thread, `concurrency` connections); its CPU from getrusage."""
    lines = workdir / "wrk-requests.tsv"
    lines.write_bytes(b"".join(host.encode() + b"\t" + body + b"\n" for host, body in requests))
    script = workdir / "wrk-requests.lua"
    script.write_text(_WRK_SCRIPT % (lines, PATH))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            f"http://{address[0]}:{address[1]}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + ANSWER_TIMEOUT,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = parse_wrk(result.stdout)
    load.cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    load.elapsed = load.elapsed or elapsed
    return load


def parse_wrk(output: str) -> Load:
    """The counts and p50/p99 of `wrk --latency` output (non-2xx/3xx answers and socket errors are errors)."""

    def seconds(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", output)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    percentiles = {
        int(p): seconds(v, u) for p, v, u in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    total = int(done.group(1))
    return Load(
        "wrk",
        total - (int(bad.group(1)) if bad else 0),
        errors,
        seconds(done.group(2), done.group(3)),
        percentiles.get(50, 0.0),
        percentiles.get(99, 0.0),
        0.0,
    )


# --- running ----------------------------------------------------------------------------------------------------


@dataclass
class _Gateway:
    """A started benchmark gateway and the process ids whose CPU is counted."""

    address: tuple[str, int]
    workers: int
    pickers: list[int] = field(default_factory=list)
    envoy: list[int] = field(default_factory=list)
    pods: list[int] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(pid) for pid in getattr(self, role)) for role in ("pickers", "envoy", "pods")}


def _start_gateway(settings: Settings, body_mode: str, workers: int, state: Path):
    from poolgate.up.processes import free_port
    from poolgate.up.stack import Stack

    listener = f"127.{settings.address_block}.2.1"
    port = free_port(listener)
    name = f"{body_mode.lower()}-{workers}"
    stack = Stack.from_objects(
        bench_objects(workers, settings.pods, port, settings.profile),
        state,
        settings.address_block,
        name,
        body_mode=body_mode,
        envoy_log_level="error",
        translate={"picker_edits_responses": settings.response_path == "inline"},
        picker_tls=settings.picker_tls,
    )
    stack.start()
    gateway = _Gateway((listener, port), workers)
    for name, child in stack.supervisor.children.items():
        role = name.split("/")[0]
        {"picker": gateway.pickers, "envoy": gateway.envoy, "pod": gateway.pods}[role].append(child.popen.pid)
    return stack, gateway


def _measure(
    gateway: _Gateway, settings: Settings, mode: str, concurrency: int, bodies: list[bytes], workdir: Path
) -> dict:
    hosts = mode_hosts(mode, gateway.workers)
    requests = [(hosts[i % len(hosts)], body) for i, body in enumerate(bodies)]

    def load(duration: float) -> Load:
        if settings.generator == "wrk":
            return wrk_load(gateway.address, requests, concurrency, duration, workdir)
        return python_load(gateway.address, requests, concurrency, duration)

    if settings.warmup:
        load(settings.warmup)
    before = gateway.cpu()
    result = load(settings.duration)
    after = gateway.cpu()
    answered = max(result.requests, 1)

    def per_request(seconds: float) -> float:
        return round(seconds / answered * 1e3, 3)

    return {
        "mode": mode,
        "workers": 0 if mode == "direct" else gateway.workers,
        "concurrency": concurrency,
        "rps": round(result.requests / result.elapsed),
        "p50_ms": round(result.p50_s * 1e3, 3),
        "p99_ms": round(result.p99_s * 1e3, 3),
        "picker_cpu_ms_per_req": None if mode == "direct" else per_request(after["pickers"] - before["pickers"]),
        "envoy_cpu_ms_per_req": per_request(after["envoy"] - before["envoy"]),
        "backend_cpu_ms_per_req": per_request(after["pods"] - before["pods"]),
        "generator_cpu_ms_per_req": per_request(result.cpu_s),
        "requests": result.requests,
        "errors": result.errors,
        "generator": result.generator,
        "stream_tokens": settings.stream_tokens,
        "profile": settings.profile,
        "response_path": None if mode == "direct" else settings.response_path,
        "picker_tls": None if mode == "direct" else settings.picker_tls,
        "load_1m": round(os.getloadavg()[0], 2),
    }  # the machine's load: other work shares the cores


def add_overhead(rows: list[dict]) -> None:
    """Set `added_p50_ms` / `added_p99_ms` of each picker row: its latency minus `direct`'s at the same
    concurrency (None when there is no direct row)."""
    direct = {r["concurrency"]: r for r in rows if r["mode"] == "direct"}
    for row in rows:
        base = direct.get(row["concurrency"]) if row["mode"] != "direct" else None
        row["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3) if base else None
        row["added_p99_ms"] = round(row["p99_ms"] - base["p99_ms"], 3) if base else None


BODY_MODES = {"picker-duplex": "FULL_DUPLEX_STREAMED", "picker-buffered": "BUFFERED"}


def gateways(settings: Settings) -> list[tuple[str, int, list[str]]]:
    """(body mode, picker processes, modes measured) of each gateway a run starts, in order."""
    picker_modes = [m for m in settings.modes if m != "direct"] or ["picker-duplex"]
    out = []
    for workers in settings.workers:
        for mode in picker_modes:
            out.append((BODY_MODES[mode], workers, [m for m in (mode,) if m in settings.modes]))
    if "direct" in settings.modes:
        out[0][2].insert(0, "direct")
    return out


def run_overhead(settings: Settings, progress: Progress | None = None) -> list[dict]:
    """Start each gateway in turn (see `gateways`), run its modes at every concurrency, and return one row per
    (mode, workers, concurrency)."""
    say = progress or (lambda message: None)
    bodies = request_bodies(stream_tokens=settings.stream_tokens)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="poolgate-overhead-") as tmp:
        state = Path(tmp)
        for body_mode, workers, modes in gateways(settings):
            say(f"starting a gateway: body mode {body_mode}, {workers} picker process{'es' if workers > 1 else ''}")
            stack, gateway = _start_gateway(settings, body_mode, workers, state)
            try:
                for concurrency in settings.concurrencies:
                    for mode in modes:
                        say(f"{mode} (workers {workers}), concurrency {concurrency}")
                        row = _measure(gateway, settings, mode, concurrency, bodies, state)
                        rows.append(row)
                        say(
                            f"done: {mode} workers {row['workers']} c={concurrency}: {row['rps']} req/s, "
                            f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']}, "
                            f"machine load {row['load_1m']}"
                        )
            finally:
                stack.stop()
    add_overhead(rows)
    return rows


# --- command line -----------------------------------------------------------------------------------------------

LATENCY_COLUMNS = (
    "mode",
    "workers",
    "concurrency",
    "rps",
    "p50_ms",
    "p99_ms",
    "added_p50_ms",
    "added_p99_ms",
    "errors",
)
CPU_COLUMNS = (
    "mode",
    "workers",
    "concurrency",
    "picker_cpu_ms_per_req",
    "envoy_cpu_ms_per_req",
    "backend_cpu_ms_per_req",
    "generator_cpu_ms_per_req",
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "What the endpoint picker adds to a request, on real processes: Envoy, pickers and no-latency simulated pods "
        "started like `poolgate up`, the same small chat requests sent three ways (direct: a pool without picker; "
        "picker-duplex; picker-buffered) at each concurrency by a closed-loop load generator. Prints requests/s, "
        "p50/p99 latency, the latency added over direct, and CPU milliseconds per request of the pickers, Envoy, "
        "the pods and the generator."
    )
    parser.add_argument(
        "--concurrency",
        type=_ints,
        default=CONCURRENCIES,
        metavar="N,N,...",
        help="requests in flight, comma-separated (default: 1,8,32,64)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=_ints,
        default=None,
        metavar="N,N,...",
        help="picker process counts, one gateway each (default: 1,2; with --quick: 1)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="measured seconds per row (default: 10; with --quick: 3)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="unmeasured seconds of load before each row (default: 2; with --quick: 0.5)",
    )
    parser.add_argument("--pods", type=int, default=2, help="simulated pods, no latency (default: %(default)s)")
    parser.add_argument(
        "--stream-tokens",
        type=int,
        default=0,
        metavar="N",
        help="stream N tokens per answer as SSE instead of one JSON answer (default: %(default)s)",
    )
    parser.add_argument(
        "--profile", default="poolgate-default", help="the pickers' scheduling profile (default: %(default)s)"
    )
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="python",
        help="load generator: this process's asyncio client, or wrk if installed (default: %(default)s)",
    )
    parser.add_argument(
        "--address-block",
        type=int,
        default=250,
        help="loopback block 127.B.x.y for the gateway's processes (default: %(default)s)",
    )
    parser.add_argument(
        "--response-path",
        choices=RESPONSE_PATHS,
        default="observed",
        help="the picker observes each response on a call Envoy does not wait for, or answers it inline on the "
        "picking call (default: %(default)s)",
    )
    parser.add_argument(
        "--picker-tls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Envoy calls the pickers over TLS, as `poolgate up` does by default (default: on)",
    )
    parser.add_argument("--quick", action="store_true", help="one picker process, 3 s per row: under 2 minutes")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    add_plot_arguments(parser, "overhead.png (requests/s and p50 against concurrency per mode)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress as Bar

    from poolgate.bench.report import output_console, print_table, write_json

    try:
        settings = Settings(
            modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
            concurrencies=args.concurrency,
            workers=args.workers or ((1,) if args.quick else (1, 2)),
            duration=args.duration or (3.0 if args.quick else 10.0),
            warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0),
            pods=args.pods,
            stream_tokens=args.stream_tokens,
            profile=args.profile,
            generator=args.generator,
            address_block=args.address_block,
            response_path=args.response_path,
            picker_tls=args.picker_tls,
        )
    except ValueError as error:
        print(f"poolgate bench overhead: {error}", file=sys.stderr)
        return 2
    cases = len(settings.concurrencies) * sum(len(modes) for _, _, modes in gateways(settings))
    with Bar(console=Console(stderr=True), auto_refresh=False) as bar:
        task = bar.add_task("overhead", total=cases)

        def progress(message: str) -> None:
            if message.startswith("done: "):
                bar.console.print(message.removeprefix("done: "))
                bar.advance(task)
            else:
                bar.update(task, description=message)
            bar.refresh()

        rows = run_overhead(settings, progress)
    out = output_console()
    print_table(
        f"Envoy + picker: throughput and client latency ({settings.generator} generator, {settings.pods} "
        f"no-latency pods, profile {settings.profile})",
        rows,
        LATENCY_COLUMNS,
        out,
    )
    print_table("CPU milliseconds per request", rows, CPU_COLUMNS, out)
    if not args.no_plots:
        print(f"plot: {plot(rows, Path(args.plots) / 'overhead.png')}")
    if args.json:
        write_json(args.json, rows)
    return 0


def plot(rows: list[dict], path: Path) -> Path:
    """Requests/s and p50 latency against concurrency, one line per mode and picker process count."""
    from poolgate.bench.report import new_figure, save_figure

    fig, (throughput, latency) = new_figure(1, 2, figsize=(10, 4))
    series: dict[str, list[dict]] = {}
    for row in rows:
        label = row["mode"] if row["mode"] == "direct" else f"{row['mode']} x{row['workers']}"
        series.setdefault(label, []).append(row)
    for label, points in series.items():
        points.sort(key=lambda r: r["concurrency"])
        x = [r["concurrency"] for r in points]
        throughput.plot(x, [r["rps"] for r in points], marker="o", label=label)
        latency.plot(x, [r["p50_ms"] for r in points], marker="o", label=label)
    concurrencies = sorted({r["concurrency"] for r in rows})
    for ax, title, unit in ((throughput, "throughput", "requests/s"), (latency, "p50 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    latency.legend()
    fig.suptitle("poolgate: Envoy direct vs Envoy + endpoint picker")
    return save_figure(fig, path)
