"""The picker decides where each request goes, and only pool members are ever reached (GIE conformance behaviours:
picker-steered routing, data-parallel target ports, served-endpoint reporting, no client steering)."""

from __future__ import annotations

import pytest

from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.api.contract import STEERING_HEADER

pytestmark = pytest.mark.xdist_group("e2e-steering")


def objects(ports=(8000,), replicas=3):
    return (
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(ports=ports),
        service(),
        sim_deployment("pool", replicas=replicas, ports=ports),
    )


def test_each_request_lands_on_the_endpoint_the_picker_chose(start_stack, http):
    stack = start_stack(*objects())
    endpoints = stack.endpoints("pool")
    assert len(endpoints) == 3
    for endpoint in endpoints:
        for _ in range(3):
            response = http.post(f"{stack.url()}/v1/chat/completions", json=chat(), headers={STEERING_HEADER: endpoint})
            assert response.status_code == 200, response.text
            assert response.headers["x-poolgate-served-by"] == endpoint
            # the picker's pick and the endpoint Envoy reports back to the picker agree with where it landed
            assert response.headers["x-conformance-test-selected-endpoint"] == endpoint
            assert response.headers["x-conformance-test-served-endpoint"] == endpoint


def test_three_target_ports_per_pod_steer_to_the_exact_port(start_stack, http):
    stack = start_stack(*objects(ports=(8000, 8001, 8002), replicas=2))
    endpoints = stack.endpoints("pool")
    assert len(endpoints) == 6 and len({e.rsplit(":", 1)[0] for e in endpoints}) == 2
    for endpoint in endpoints:
        response = http.post(
            f"{stack.url()}/v1/completions",
            json={"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": "hi", "max_tokens": 2},
            headers={STEERING_HEADER: endpoint},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-poolgate-served-by"] == endpoint


def test_a_client_sent_destination_header_never_steers(start_stack, http):
    stack = start_stack(*objects())
    members = stack.endpoints("pool")
    outsider = f"127.{stack.block}.9.9:8000"
    for target, forged in [(members[0], members[1]), (members[1], outsider), (members[2], members[0])]:
        response = http.post(
            f"{stack.url()}/v1/chat/completions",
            json=chat(),
            headers={
                STEERING_HEADER: target,
                "x-gateway-destination-endpoint": forged,
                "x-gateway-destination-endpoint-subset": forged,
            },
        )
        assert response.status_code == 200
        assert response.headers["x-poolgate-served-by"] == target
    # without the picker's steering the picker still chooses: never the forged outsider
    served = {
        http.post(
            f"{stack.url()}/v1/chat/completions", json=chat(), headers={"x-gateway-destination-endpoint": outsider}
        ).headers["x-poolgate-served-by"]
        for _ in range(12)
    }
    assert served <= set(members)
