"""Clients trying to choose where their request goes: forged destination headers in every spelling, duplicates and
lists, forged subset and served headers, Envoy-looking headers. None of them reaches an address outside the pool (a
live simulated server stands there to notice), none overrides the picker, and with the picker down none pins a pod.
Cross-namespace references without a ReferenceGrant are refused (RefNotPermitted) and not routed."""

from __future__ import annotations

import pytest
import yaml

from poolgate.api.builders import chat, gateway, gateway_class, grant, pool, pool_ref, route, service, sim_deployment
from poolgate.api.contract import DESTINATION_HEADER, STEERING_HEADER

pytestmark = pytest.mark.xdist_group("reliability-steering")


def forgeries(outsider: str, member: str) -> list[list[tuple[str, str]]]:
    """Header sets a client might send to steer its request to `outsider` (not in the pool) or pin `member`."""
    return [
        [(DESTINATION_HEADER, outsider)],
        [("X-Gateway-Destination-Endpoint", outsider)],
        [("X-GATEWAY-DESTINATION-ENDPOINT", f"{outsider} ,")],
        [(DESTINATION_HEADER, f"{outsider},{member}")],  # a list, the non-member first
        [(DESTINATION_HEADER, f"{member},{outsider}")],
        [(DESTINATION_HEADER, outsider), (DESTINATION_HEADER, member)],  # the header twice
        [(DESTINATION_HEADER, member), ("x-Gateway-destination-endpoint", outsider)],
        [(f"{DESTINATION_HEADER}-subset", outsider)],
        [(f"{DESTINATION_HEADER}-served", outsider)],
        [("envoy.lb", f"{DESTINATION_HEADER}={outsider}")],
        [("x-envoy-original-dst-host", outsider)],
        [("x-envoy-upstream-alt-stat-name", outsider), (DESTINATION_HEADER, outsider)],
    ]


def test_forged_destination_headers_never_steer_nor_reach_outside_the_pool(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=[{"name": "http", "port": 0, "protocol": "HTTP"}]),
        route(),
        pool(failure_mode="FailOpen"),
        service(),
        sim_deployment("pool", replicas=3),
        sim_deployment("outsider", replicas=1),
    )
    members = stack.endpoints("pool")
    [outsider] = [f"{p.ip}:8000" for p in stack.stack.status.plan.sim_pods if p.name == "outsider-0"]
    assert outsider not in members
    url = f"{stack.url()}/v1/chat/completions"

    def send(headers: list[tuple[str, str]]) -> str:
        response = http.post(url, json=chat(), headers=headers)
        assert response.status_code == 200, (headers, response.text)
        return response.headers["x-poolgate-served-by"]

    # the picker's choice stands whatever the client adds
    for target, other in ((members[0], members[1]), (members[2], members[0])):
        for forged in forgeries(outsider, other):
            assert send([(STEERING_HEADER, target), *forged]) == target, forged
    # left to the picker, only members serve
    for forged in forgeries(outsider, members[0]):
        served = {send(forged) for _ in range(3)}
        assert served <= set(members), (forged, served)
    # with the picker gone, Envoy's own balancing (FailOpen) takes over: still only members, and no pinning
    stack.child("picker/default/epp").kill()
    for forged in forgeries(outsider, members[0]):
        served = {send(forged) for _ in range(3)}
        assert served <= set(members), (forged, served)
    pinned = {send([(DESTINATION_HEADER, members[0])]) for _ in range(30)}
    assert len(pinned) >= 2 and pinned <= set(members), pinned


def test_a_cross_namespace_pool_reference_needs_a_reference_grant(start_stack, http):
    listener = [{"name": "http", "port": 0, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]
    cross = route(
        "cross",
        namespace="team",
        parents=[{"name": "gw", "namespace": "default"}],
        rules=[{"backendRefs": [pool_ref("pool", namespace="default")]}],
    )
    stack = start_stack(
        gateway_class(), gateway(listeners=listener), cross, pool(), service(), sim_deployment("pool", replicas=1)
    )
    [parent] = stack.status("HTTPRoute", "cross")["parents"]
    resolved = next(c for c in parent["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "RefNotPermitted")
    for _ in range(3):
        assert http.post(f"{stack.url()}/v1/chat/completions", json=chat()).status_code == 500  # not routed
    # a grant for another kind changes nothing; a grant for InferencePools lets the route through
    path = stack.stack.files[0]
    objects = list(yaml.safe_load_all(path.read_text()))
    path.write_text(yaml.safe_dump_all([*objects, grant("default", "team", to_kind="Service", to_group="")]))
    stack.stack.reload()
    assert http.post(f"{stack.url()}/v1/chat/completions", json=chat()).status_code == 500
    path.write_text(yaml.safe_dump_all([*objects, grant("default", "team")]))
    stack.stack.reload()
    [parent] = stack.status("HTTPRoute", "cross")["parents"]
    assert next(c for c in parent["conditions"] if c["type"] == "ResolvedRefs")["status"] == "True"
    response = http.post(f"{stack.url()}/v1/chat/completions", json=chat())
    assert response.status_code == 200 and response.headers["x-poolgate-served-by"] in stack.endpoints("pool")
