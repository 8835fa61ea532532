"""Model servers failing under load: a pod killed (retries on the picker's fallbacks, streams fail cleanly, the dead
pod leaves and returns), and a pod whose /metrics answers garbage or hangs (no request lost, one scrape in flight,
staleness reported)."""

from __future__ import annotations

import pytest

from e2e.reliability.conftest import failures
from poolgate.load import faults

pytestmark = pytest.mark.xdist_group("reliability-pods")


def test_a_killed_model_server_loses_no_request_and_leaves_and_rejoins_the_pool(start_stack, report):
    stack = start_stack(*faults.model_server_objects())
    result = faults.model_server_killed(stack.stack, seconds=7.0, rate=30.0)
    report(result)
    assert result.row["requests"] >= 180
    assert result.row["lost"] == 0, failures(result)
    assert result.row["retried"] >= 1, result.facts  # on the pod when it died (or picked for it), served by a fallback
    assert result.row["retry_overflow"] == 0  # no retry refused by a circuit breaker
    # its scrapes are refused: the picker stops choosing it at once (one 50 ms scrape interval; 1 s staleness behind)
    assert result.facts["picked_after_death_s"] < 1.0, result.facts
    assert result.row["streams_failed_cleanly"], result.facts["streams"]
    assert result.row["recovered"], result.facts  # picked and served again after its restart


@pytest.mark.parametrize("mode", ["garbage", "hang"])
def test_a_pod_with_broken_metrics_is_neither_flooded_nor_losing_requests(start_stack, report, mode):
    stack = start_stack(*faults.metrics_fault_objects())
    result = faults.metrics_fault(stack.stack, mode, seconds=6.0, rate=30.0)
    report(result)
    facts = result.facts
    assert result.row["lost"] == 0, failures(result)
    assert facts["max_scrapes_in_flight"] == 1  # never more than one scrape at a time
    if mode == "garbage":
        assert 10 <= facts["scrapes"] <= 80  # about one per 50 ms interval, not more
    else:
        assert 1 <= facts["scrapes"] <= 4  # one per 1 s timeout
    assert facts["scrape_errors"] >= 1  # counted under its reason
    assert facts["metrics_age_s"] > 1.0  # staleness in the picker's metrics ...
    assert facts["logged"]  # ... and its log
    assert facts["flaky_share"] <= 0.34  # its fair share at most: never all the traffic
    assert result.row["recovered"], facts  # served again once its metrics are back
