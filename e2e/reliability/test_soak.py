"""A bounded soak: a steady mixed load (chat, streamed chat with usage, completions) while the picker's resident
memory and open file descriptors are sampled from /proc. About 40 s by default; POOLGATE_SOAK=1 runs 30 minutes
(POOLGATE_SOAK_MINUTES to choose), as `poolgate bench faults --soak` does."""

from __future__ import annotations

import os

import pytest

from e2e.reliability.conftest import failures
from poolgate.load import faults

SECONDS = float(os.environ.get("POOLGATE_SOAK_MINUTES", "30")) * 60 if os.environ.get("POOLGATE_SOAK") else 40.0
pytestmark = [pytest.mark.xdist_group("reliability-soak"), pytest.mark.soak, pytest.mark.timeout(SECONDS + 180)]


def test_the_picker_neither_leaks_memory_nor_file_descriptors_under_a_steady_load(start_stack, report):
    stack = start_stack(*faults.storm_objects(0, 0))
    result = faults.soak(stack.stack, seconds=SECONDS, rate=30.0)
    report(result)
    assert result.row["requests"] >= SECONDS * 25
    assert result.row["failed"] == 0, failures(result)
    assert len(result.facts["samples"]) >= 30
    assert result.facts["rss_growth"] < 0.10, result.facts["samples"]
    assert result.facts["fd_growth"] < 0.10, result.facts["samples"]
