"""The whole gateway for tests (`poolgate up`'s Stack: real Envoy, real pickers, simulated vLLM pods as real
processes) started from objects, each stack in its own loopback block so stacks never collide."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from poolgate.up.stack import Stack

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
_blocks = itertools.count()


def quickstart_objects() -> list[dict]:
    """The objects of examples/quickstart.yaml, with the Gateway on a free port (of the stack's own address)."""
    objects = list(yaml.safe_load_all(QUICKSTART.read_text()))
    for obj in objects:
        if obj["kind"] == "Gateway":
            obj["spec"]["listeners"][0]["port"] = 0
    return objects


def next_block() -> int:
    """A loopback block (127.B.x.y) no other stack of this test run uses: 100 per pytest-xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = 20 + 100 * int(worker or 0) + next(_blocks)
    assert block < 255, "too many stacks in one worker"
    return block


class RunningStack:
    """A started Stack plus what tests need: its gateway URL, status, endpoints and child processes."""

    def __init__(self, stack: Stack, block: int):
        self.stack = stack
        self.block = block

    def url(self, gateway: str = "default/gw") -> str:
        return self.stack.gateway_urls()[gateway][0]

    def status(self, kind: str, name: str) -> dict:
        """The status poolgate computes for an object (kind + name) of the running configuration."""
        found = [
            s["status"]
            for s in self.stack.status.translation.status()
            if s["kind"] == kind and s["metadata"]["name"] == name
        ]
        assert found, f"no status for {kind} {name}"
        return found[0]

    def endpoints(self, pool: str, namespace: str = "default") -> list[str]:
        """`ip:port` of every endpoint of a pool, as the translator sees them."""
        target = self.stack.status.translation.graph.pools[(namespace, pool)]
        return [f"{pod.status.pod_ip}:{port}" for pod, port in target.endpoints]

    def child(self, name: str):
        return self.stack.supervisor.children[name]


@contextlib.contextmanager
def running_stack(
    directory: Path, *objects: dict, picker_args: tuple[str, ...] = ("--enable-conformance-steering",), **options
) -> Iterator[RunningStack]:
    """Start a stack from raw objects (dicts, see Stack.from_objects) in a loopback block of its own; stop it on
    exit."""
    block = next_block()
    stack = Stack.from_objects(list(objects), directory, block, picker_args=picker_args, **options)
    try:
        stack.start()
        yield RunningStack(stack, block)
    finally:
        stack.stop()
