"""A picker killed under steady load: a FailOpen pool keeps answering through Envoy's own balancing, a FailClose pool
answers 5xx at once (never hangs) while every response already on its way finishes, and both go back to picking by
themselves when the picker returns."""

from __future__ import annotations

import pytest

from e2e.reliability.conftest import failures
from poolgate.load import faults

pytestmark = pytest.mark.xdist_group("reliability-pickers")


def test_a_killed_picker_fails_open_or_closed_fast_and_both_recover_by_themselves(start_stack, report):
    stack = start_stack(*faults.picker_fault_objects(), picker_args=faults.PICKER_KILLED_ARGS)
    failopen, failclose = faults.picker_killed(stack.stack, seconds=6.0, rate=30.0)
    report(failopen)
    report(failclose)

    assert failopen.row["requests"] >= 150
    assert failopen.row["failed"] == 0, failures(failopen)
    assert failopen.facts["served_during_outage"] >= 40  # answered while no picker ran
    assert failopen.row["recovered"], failopen.facts  # the picker chooses again after its restart

    assert failclose.row["lost"] == 0, failures(failclose)  # every failure is a fast 5xx during the outage:
    assert failclose.facts["cut_by_kill"] == 0  # a response on its way when the picker died finishes
    assert failclose.row["failed"] >= 40
    assert failclose.row["hung"] == 0
    assert failclose.facts["first_5xx_after_kill_s"] < 1.0
    assert failclose.facts["slowest_5xx_ms"] < 1000
    assert failclose.row["recovered"], failclose.facts
    assert failclose.facts["recovery_s"] < 2.0
