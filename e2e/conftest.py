"""End-to-end fixtures: the whole gateway started from objects (tests/support/stacks.py), and an HTTP client."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stacks import RunningStack, running_stack


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., RunningStack]]:
    """Start stacks from raw objects (see `running_stack`); every one is stopped at the end of the test."""
    with contextlib.ExitStack() as stacks:
        yield lambda *objects, **options: stacks.enter_context(running_stack(tmp_path, *objects, **options))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as client:
        yield client
