"""A real `poolgate picker` started with an upstream chart's rendered EndpointPickerConfig serves requests through
Envoy (the drop-in case: keep your config file, swap the image)."""

from __future__ import annotations

import pytest

from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.api.contract import SERVED_BY_HEADER
from tests.support.upstream import UPSTREAM_CONFIGS

pytestmark = pytest.mark.xdist_group("e2e-upstream-configs")


@pytest.mark.parametrize("config", ["llm-d-router-v0.10/chart-default.yaml", "gie-v1.5.0/chart-default.yaml"])
def test_the_upstream_chart_default_config_serves_through_envoy(start_stack, http, config):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(),
        service(),
        sim_deployment("pool", replicas=2),
        picker_args=("--config-file", str(UPSTREAM_CONFIGS / config), "--profile", "default"),
    )
    members = set(stack.endpoints("pool"))
    body = chat(content="Explain the printing press. " * 40)
    served = []
    for _ in range(4):
        response = http.post(f"{stack.url()}/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        served.append(response.headers[SERVED_BY_HEADER])
    assert set(served) <= members
    # prefix affinity (weight 3 of 7) keeps a repeated prompt on the endpoint that served it first
    assert len(set(served[1:])) == 1
