"""The systems the peers benchmark compares, each started fresh on its own fleet of `poolgate sim` pods.

| system | what routes | configuration |
|---|---|---|
| `poolgate-default`, `llmd-default` | Envoy + poolgate's picker (ext_proc, FULL_DUPLEX_STREAMED) | the pool's scheduling profile annotation |
| `envoy` | Envoy alone: an InferencePool without endpointPickerRef (least request over Envoy's own counts) | — |
| `sglang-router` | `sglang-router launch --policy cache_aware` | defaults (cache threshold 0.3, balance 64 / 1.5) |
| `vllm-router` | `vllm-router --policy cache_aware` | the same defaults (see `peer_argv`) |

Every system gets the same pods, started by `poolgate.up.stack.Stack` from the same Deployment (latency model on):
the peers run next to a stack whose pool has no picker, and are given the pods' URLs; their client traffic bypasses
Envoy. The peers come from PyPI into their own virtualenv (`make peers-venv`, `.venv-peers`, or
`POOLGATE_PEERS_VENV`), so the main dependencies do not grow.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from poolgate.api.builders import MODEL, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.api.contract import PROFILE_ANNOTATION
from poolgate.up.processes import Process, Spec, free_port
from poolgate.up.stack import Stack

PROFILES = ("poolgate-default", "llmd-default")
PEERS = ("sglang-router", "vllm-router")
SYSTEMS = (*PROFILES, "envoy", *PEERS)
PEERS_VENV_ENV = "POOLGATE_PEERS_VENV"
PEERS_VENV = Path(__file__).resolve().parents[3] / ".venv-peers"
READY_TIMEOUT = 60.0  # seconds for a system to answer its first chat request


class PeersMissing(RuntimeError):
    """A peer router was asked for but its virtualenv is not installed."""


def peers_venv() -> Path:
    """The virtualenv holding sglang-router and vllm-router."""
    return Path(os.environ.get(PEERS_VENV_ENV) or PEERS_VENV)


def peer_executable(system: str) -> Path:
    """The peer router's console script; PeersMissing (saying how to install it) when absent."""
    path = peers_venv() / "bin" / system
    if not path.exists():
        raise PeersMissing(
            f"{system} is not installed at {path}: run `make peers-venv` (creates .venv-peers), "
            f"or set {PEERS_VENV_ENV} to a virtualenv that has sglang-router and vllm-router"
        )
    return path


def peer_argv(system: str, host: str, port: int, metrics_port: int, workers: list[str]) -> tuple[str, ...]:
    """The peer router's command line: cache-aware policy over the given worker URLs, metrics on `metrics_port`."""
    executable = str(peer_executable(system))
    common = (
        *("--host", host, "--port", str(port)),
        *("--worker-urls", *workers),
        *("--policy", "cache_aware"),
        *("--prometheus-host", host, "--prometheus-port", str(metrics_port)),
    )
    if system == "sglang-router":
        return (executable, "launch", *common, "--log-level", "warn")
    if system == "vllm-router":
        return (executable, *common, "--log-level", "warning")
    raise ValueError(f"unknown peer {system!r}; choose from {', '.join(PEERS)}")


def fleet_objects(system: str, pods: int) -> list[dict]:
    """The stack's objects: a Gateway and route to pool `pool` of `pods` simulated pods (latency model on), with a
    picker of the system's profile, or without a picker for `envoy` and the peers."""
    picked = system in PROFILES
    inference_pool = pool("pool", picker="epp" if picked else None, failure_mode="FailClose" if picked else None)
    if picked:
        inference_pool["metadata"]["annotations"] = {PROFILE_ANNOTATION: system}
    objects = [
        gateway_class(),
        gateway(listeners=listener(0)),
        route(),
        inference_pool,
        sim_deployment("pool", pods, args=()),
    ]
    return objects + ([service("epp", ip=None)] if picked else [])


@dataclass
class RunningSystem:
    """A started system: the URL clients send to, the pods' `ip:port`s and a peer's Prometheus metrics URL."""

    name: str
    url: str
    pods: list[str]
    stack: Stack
    metrics_url: str | None = None


@contextlib.contextmanager
def running_system(system: str, pods: int, directory: Path, block: int) -> Iterator[RunningSystem]:
    """Start `system` on a fresh fleet of `pods` pods in loopback block `block` (127.B.x.y); stop it all on exit."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    if system in PEERS:
        peer_executable(system)  # fail before starting anything
    stack = Stack.from_objects(fleet_objects(system, pods), directory, block, name=system)
    with stack:
        target = stack.status.translation.graph.pools[("default", "pool")]  # type: ignore[union-attr]
        endpoints = [f"{pod.status.pod_ip}:{port}" for pod, port in target.endpoints]
        url = stack.gateway_urls()["default/gw"][0]
        metrics_url = None
        if system in PEERS:
            host = f"127.{block}.3.1"
            port = metrics_port = free_port(host)
            while metrics_port == port:
                metrics_port = free_port(host)
            argv = peer_argv(system, host, port, metrics_port, [f"http://{e}" for e in endpoints])
            router = stack.supervisor.start(system, Spec(argv, (host, port), ready_timeout=READY_TIMEOUT))
            stack.supervisor.wait_ready(system)
            url, metrics_url = f"http://{host}:{port}", f"http://{host}:{metrics_port}/metrics"
            wait_until_answering(url, router)
        else:
            wait_until_answering(url)
        yield RunningSystem(system, url, endpoints, stack, metrics_url)


def wait_until_answering(url: str, process: Process | None = None, timeout: float = READY_TIMEOUT) -> None:
    """Send a one-token chat request until one is answered 200 (routers find their workers healthy first);
    RuntimeError, with the end of the `process`'s output when it exited, if none is within `timeout`."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            if process is not None and not process.running:
                raise RuntimeError(f"{process.name} exited before answering: {process.output()[-2000:]}")
            try:
                response = client.post(
                    url + "/v1/chat/completions",
                    json={"model": MODEL, "messages": [{"role": "user", "content": "ready?"}], "max_tokens": 1},
                )
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as error:
                last = str(error)
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer a chat request within {timeout:g} s (last: {last})")
