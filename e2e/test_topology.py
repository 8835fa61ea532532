"""Gateways, routes and pools combined: weighted pools, shared pools, rules to different pools, and what happens
when a backend or a picker is missing (status and the HTTP answer)."""

from __future__ import annotations

import math

import pytest

from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, pool_ref, route, service, sim_deployment

pytestmark = pytest.mark.xdist_group("e2e-topology")


def cond(conditions: list[dict], type_: str) -> tuple[str, str]:
    [found] = [c for c in conditions if c["type"] == type_]
    return found["status"], found["reason"]


def test_weighted_pools_split_traffic_70_30(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(rules=[{"backendRefs": [pool_ref("a", weight=70), pool_ref("b", weight=30)]}]),
        pool("a", picker="epp-a"),
        pool("b", picker="epp-b"),
        service("epp-a"),
        service("epp-b"),
        sim_deployment("a", replicas=1),
        sim_deployment("b", replicas=1),
    )
    [a_endpoint], [b_endpoint] = stack.endpoints("a"), stack.endpoints("b")
    n = 400
    served = [
        http.post(f"{stack.url()}/v1/chat/completions", json=chat()).headers["x-poolgate-served-by"] for _ in range(n)
    ]
    assert set(served) == {a_endpoint, b_endpoint}
    to_a = served.count(a_endpoint)
    sd = math.sqrt(n * 0.7 * 0.3)  # binomial: 280 +- 9.2
    assert abs(to_a - 0.7 * n) < 4 * sd, to_a


def test_two_gateways_and_routes_share_one_pool_and_rules_reach_different_pools(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway("gw", listeners=listener()),
        gateway("gw-2", listeners=listener()),
        route(
            "first",
            parents=[{"name": "gw"}],
            rules=[
                {"matches": [{"path": {"value": "/v1/chat"}}], "backendRefs": [pool_ref("shared")]},
                {"matches": [{"path": {"value": "/v1/completions"}}], "backendRefs": [pool_ref("other")]},
            ],
        ),
        route("second", parents=[{"name": "gw-2"}], rules=[{"backendRefs": [pool_ref("shared")]}]),
        pool("shared"),
        pool("other"),
        service(),
        sim_deployment("shared", replicas=2),
        sim_deployment("other", replicas=1),
    )
    shared, other = set(stack.endpoints("shared")), set(stack.endpoints("other"))
    for url in (stack.url("default/gw"), stack.url("default/gw-2")):
        response = http.post(f"{url}/v1/chat/completions", json=chat())
        assert response.status_code == 200 and response.headers["x-poolgate-served-by"] in shared
    response = http.post(
        f"{stack.url('default/gw')}/v1/completions",
        json={"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": "hi", "max_tokens": 2},
    )
    assert response.status_code == 200 and response.headers["x-poolgate-served-by"] in other
    parents = stack.status("InferencePool", "shared")["parents"]
    assert sorted(p["parentRef"]["name"] for p in parents) == ["gw", "gw-2"]
    assert all(cond(p["conditions"], "Accepted") == ("True", "Accepted") for p in parents)


def test_a_missing_pool_answers_500_and_reports_backend_not_found(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(rules=[{"matches": [{"path": {"value": "/v1"}}], "backendRefs": [pool_ref("nope")]}]),
    )
    response = http.post(f"{stack.url()}/v1/chat/completions", json=chat())
    assert response.status_code == 500
    [parent] = stack.status("HTTPRoute", "route")["parents"]
    assert cond(parent["conditions"], "ResolvedRefs") == ("False", "BackendNotFound")


def test_a_missing_picker_service_answers_5xx_and_reports_invalid_extension_ref(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(picker="missing-epp"),
        sim_deployment("pool", replicas=1),
    )
    response = http.post(f"{stack.url()}/v1/chat/completions", json=chat())
    assert 500 <= response.status_code < 600
    [parent] = stack.status("InferencePool", "pool")["parents"]
    assert cond(parent["conditions"], "ResolvedRefs") == ("False", "InvalidExtensionRef")
