"""More than 1,024 requests in flight through one pool. Each holds a gRPC stream to the pool's picker for as long as
it runs, and Envoy's default circuit breakers (1,024 requests per cluster) would fail the rest with `overflow`."""

from __future__ import annotations

import pytest

from e2e.reliability.conftest import failures
from poolgate.api.builders import chat
from poolgate.load import faults
from poolgate.load.generator import Load

pytestmark = pytest.mark.xdist_group("reliability-concurrency")

REQUESTS = 1200


def most_in_flight(outcomes) -> int:
    """The largest number of requests that were in flight at the same time."""
    events = sorted([(o.started, 1) for o in outcomes] + [(o.ended, -1) for o in outcomes])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def test_a_pool_carries_more_than_1024_requests_in_flight(start_stack):
    stack = start_stack(*faults.model_server_objects(replicas=2)).stack
    load = Load(
        f"{faults.gateway_url(stack)}/v1/chat/completions",
        rate=100_000,
        limit=REQUESTS,
        timeout=60.0,
        body=lambda i: chat(max_tokens=32, stream=True, content=f"request {i}"),
    ).start()
    load.wait_for(REQUESTS, timeout=90.0)
    outcomes = load.stop()
    assert most_in_flight(outcomes) > 1024  # the load did reach past Envoy's default limit
    assert all(o.ok for o in outcomes), failures(load)
    overflows = stack.envoy_stats(r"^cluster\.poolgate/.*overflow$")
    assert overflows and not any(overflows.values()), overflows  # no circuit breaker refused anything
