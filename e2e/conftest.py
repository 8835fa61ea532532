"""End-to-end fixtures: the whole gateway (`poolgate up`'s Stack: real Envoy, real pickers, simulated vLLM pods as
real processes) started from YAML objects, each stack in its own loopback block so stacks never collide."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
import yaml

from poolgate.up.processes import free_port
from poolgate.up.stack import Stack, StackOptions

_blocks = itertools.count()


def next_block() -> int:
    """A loopback block (127.B.x.y) no other stack of this test run uses: 100 per pytest-xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = 20 + 100 * int(worker or 0) + next(_blocks)
    assert block < 255, "too many stacks in one worker"
    return block


class RunningStack:
    """A started Stack plus what tests need: its gateway URL and its pickers and pods by name."""

    def __init__(self, stack: Stack, block: int):
        self.stack = stack
        self.block = block

    def url(self, gateway: str = "default/gw") -> str:
        return self.stack.gateway_urls()[gateway][0]

    def status(self, kind: str, name: str) -> dict:
        """The status poolgate computes for an object (kind + name) of the running configuration."""
        found = [s["status"] for s in self.stack.status.translation.status()
                 if s["kind"] == kind and s["metadata"]["name"] == name]
        assert found, f"no status for {kind} {name}"
        return found[0]

    def endpoints(self, pool: str, namespace: str = "default") -> list[str]:
        """`ip:port` of every endpoint of a pool, as the translator sees them."""
        target = self.stack.status.translation.graph.pools[(namespace, pool)]
        return [f"{pod.status.pod_ip}:{port}" for pod, port in target.endpoints]

    def child(self, name: str):
        return self.stack.supervisor.children[name]


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., RunningStack]]:
    """Start a stack from raw objects (dicts); `{port}` in a Gateway listener port is replaced by a free port.
    Every stack is stopped at the end of the test."""
    running: list[Stack] = []

    def start(*objects: dict, picker_args: tuple[str, ...] = ("--enable-conformance-steering",),
              **options) -> RunningStack:
        block = next_block()
        listener = f"127.{block}.2.1"
        for obj in objects:
            if obj.get("kind") == "Gateway":
                for item in obj["spec"]["listeners"]:
                    if item["port"] == 0:
                        item["port"] = free_port(listener)
        path = tmp_path / f"objects-{block}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        stack = Stack([path], StackOptions(state_dir=tmp_path / f"state-{block}", listener_address=listener,
                                           address_block=block, picker_args=picker_args, **options))
        running.append(stack)
        stack.start()
        return RunningStack(stack, block)

    yield start
    for stack in running:
        stack.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client
