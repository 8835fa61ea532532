"""Status computed from objects: Gateway API route/gateway conditions and InferencePool status.parents."""

from __future__ import annotations

from poolgate.api.builders import (
    basic,
    build,
    gateway,
    gateway_class,
    grant,
    pod,
    pool,
    pool_ref,
    route,
    service,
)
from poolgate.api.contract import CONTROLLER_NAME
from poolgate.translate import StatusOptions, translate

NOW = "2026-01-01T00:00:00Z"


def statuses(objects, now: str = NOW) -> dict[tuple[str, str], dict]:
    out = translate(objects).status(StatusOptions(now=now))
    return {(s["kind"], s["metadata"]["name"]): s["status"] for s in out}


def cond(conditions: list[dict], type_: str) -> tuple[str, str]:
    found = [c for c in conditions if c["type"] == type_]
    assert len(found) == 1, conditions
    return found[0]["status"], found[0]["reason"]


def test_gateway_class_and_gateway_of_ours_are_accepted_and_programmed():
    st = statuses(basic())
    assert cond(st["GatewayClass", "poolgate"]["conditions"], "Accepted") == ("True", "Accepted")
    gw = st["Gateway", "gw"]
    assert cond(gw["conditions"], "Accepted") == ("True", "Accepted")
    assert cond(gw["conditions"], "Programmed") == ("True", "Programmed")
    assert gw["listeners"][0]["attachedRoutes"] == 1
    assert all(c["observedGeneration"] == 1 for c in gw["conditions"])


def test_other_controllers_gateways_are_not_ours():
    objects = build(
        gateway_class("other", "example.com/other"), gateway(class_name="other"), route(), pool(), service()
    )
    st = statuses(objects)
    assert ("Gateway", "gw") not in st and ("GatewayClass", "other") not in st
    assert ("HTTPRoute", "route") not in st
    assert st["InferencePool", "pool"]["parents"] == []


def test_route_accepted_and_pool_parent_entry():
    st = statuses(basic())
    parents = st["HTTPRoute", "route"]["parents"]
    assert len(parents) == 1 and parents[0]["controllerName"] == CONTROLLER_NAME
    assert parents[0]["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "gw",
        "namespace": "default",
    }
    assert cond(parents[0]["conditions"], "Accepted") == ("True", "Accepted")
    assert cond(parents[0]["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")
    pool_parents = st["InferencePool", "pool"]["parents"]
    assert [p["parentRef"]["name"] for p in pool_parents] == ["gw"]
    assert pool_parents[0]["parentRef"]["namespace"] == "default"
    assert cond(pool_parents[0]["conditions"], "Accepted") == ("True", "Accepted")
    assert cond(pool_parents[0]["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")


def test_two_routes_on_two_gateways_to_one_pool_give_one_entry_per_gateway():
    objects = build(
        gateway_class(),
        gateway("gw-a"),
        gateway("gw-b", listeners=[{"name": "http", "port": 9090, "protocol": "HTTP"}]),
        route("ra", parents=[{"name": "gw-a"}]),
        route("rb", parents=[{"name": "gw-b"}]),
        route("rb2", parents=[{"name": "gw-b"}]),
        pool(),
        service(),
    )
    st = statuses(objects)
    assert [p["parentRef"]["name"] for p in st["InferencePool", "pool"]["parents"]] == ["gw-a", "gw-b"]


def test_unreferenced_pool_has_empty_parents_and_removal_clears_entry():
    previous = {
        "parents": [
            {"parentRef": {"name": "gw", "namespace": "default"}, "controllerName": CONTROLLER_NAME, "conditions": []}
        ]
    }
    objects = build(gateway_class(), gateway(), pool(status=previous), service())
    assert statuses(objects)["InferencePool", "pool"]["parents"] == []


def test_other_controllers_entries_are_kept():
    theirs = {
        "parentRef": {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "their-gw",
            "namespace": "default",
        },
        "controllerName": "example.com/other",
        "conditions": [
            {
                "type": "Accepted",
                "status": "True",
                "reason": "Accepted",
                "message": "",
                "lastTransitionTime": "2020-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    objects = build(
        gateway_class(), gateway(), route(status={"parents": [theirs]}), pool(status={"parents": [theirs]}), service()
    )
    st = statuses(objects)
    assert st["InferencePool", "pool"]["parents"][0] == theirs
    assert len(st["InferencePool", "pool"]["parents"]) == 2
    assert st["HTTPRoute", "route"]["parents"][0] == theirs


def test_missing_pool_is_backend_not_found():
    objects = build(gateway_class(), gateway(), route(rules=[{"backendRefs": [pool_ref("nope")]}]))
    parents = statuses(objects)["HTTPRoute", "route"]["parents"]
    assert cond(parents[0]["conditions"], "Accepted") == ("True", "Accepted")
    assert cond(parents[0]["conditions"], "ResolvedRefs") == ("False", "BackendNotFound")


def test_missing_picker_service_is_invalid_extension_ref():
    objects = build(gateway_class(), gateway(), route(), pool())
    pool_parents = statuses(objects)["InferencePool", "pool"]["parents"]
    assert cond(pool_parents[0]["conditions"], "ResolvedRefs") == ("False", "InvalidExtensionRef")
    assert cond(pool_parents[0]["conditions"], "Accepted") == ("True", "Accepted")


def test_pool_without_picker_is_accepted_and_says_how_it_is_served():
    objects = build(gateway_class(), gateway(), route(), pool(picker=None))
    entry = statuses(objects)["InferencePool", "pool"]["parents"][0]
    accepted = next(c for c in entry["conditions"] if c["type"] == "Accepted")
    assert accepted["status"] == "True" and "least request" in accepted["message"]


def test_invalid_kind_backend():
    objects = build(
        gateway_class(),
        gateway(),
        route(rules=[{"backendRefs": [{"group": "example.com", "kind": "Thing", "name": "x"}]}]),
    )
    parents = statuses(objects)["HTTPRoute", "route"]["parents"]
    assert cond(parents[0]["conditions"], "ResolvedRefs") == ("False", "InvalidKind")


def test_cross_namespace_pool_needs_reference_grant():
    base = [
        gateway_class(),
        gateway(),
        route(rules=[{"backendRefs": [pool_ref("pool", namespace="models")]}]),
        pool(namespace="models"),
        service(namespace="models"),
    ]
    denied = statuses(build(*base))
    assert cond(denied["HTTPRoute", "route"]["parents"][0]["conditions"], "ResolvedRefs") == (
        "False",
        "RefNotPermitted",
    )
    allowed = statuses(build(*base, grant("models", "default")))
    assert cond(allowed["HTTPRoute", "route"]["parents"][0]["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")
    wrong_source = statuses(build(*base, grant("models", "elsewhere")))
    assert cond(wrong_source["HTTPRoute", "route"]["parents"][0]["conditions"], "ResolvedRefs") == (
        "False",
        "RefNotPermitted",
    )


def test_route_not_allowed_by_listener_namespace_makes_pool_not_accepted():
    objects = build(
        gateway_class(),
        gateway(),
        route(namespace="team", parents=[{"name": "gw", "namespace": "default"}]),
        pool(namespace="team"),
        service(namespace="team"),
    )
    st = statuses(objects)
    assert cond(st["HTTPRoute", "route"]["parents"][0]["conditions"], "Accepted") == ("False", "NotAllowedByListeners")
    assert cond(st["InferencePool", "pool"]["parents"][0]["conditions"], "Accepted") == (
        "False",
        "HTTPRouteNotAccepted",
    )


def test_section_name_and_hostname_mismatch_reasons():
    listeners = [{"name": "http", "port": 8080, "protocol": "HTTP", "hostname": "a.example.com"}]
    objects = build(
        gateway_class(),
        gateway(listeners=listeners),
        route("bad-section", parents=[{"name": "gw", "sectionName": "nope"}]),
        route("bad-host", hostnames=["b.example.com"]),
        pool(),
        service(),
    )
    st = statuses(objects)
    assert cond(st["HTTPRoute", "bad-section"]["parents"][0]["conditions"], "Accepted") == ("False", "NoMatchingParent")
    assert cond(st["HTTPRoute", "bad-host"]["parents"][0]["conditions"], "Accepted") == (
        "False",
        "NoMatchingListenerHostname",
    )


def test_unsupported_listener_protocol():
    listeners = [{"name": "tcp", "port": 9000, "protocol": "TCP"}, {"name": "http", "port": 8080, "protocol": "HTTP"}]
    gw = statuses(build(gateway_class(), gateway(listeners=listeners)))["Gateway", "gw"]
    assert cond(gw["conditions"], "Accepted") == ("True", "ListenersNotValid")
    by_name = {ls["name"]: ls for ls in gw["listeners"]}
    assert cond(by_name["tcp"]["conditions"], "Accepted") == ("False", "UnsupportedProtocol")
    assert cond(by_name["http"]["conditions"], "Accepted") == ("True", "Accepted")


def test_last_transition_time_moves_only_when_status_changes():
    first = translate(basic()).status(StatusOptions(now="2026-01-01T00:00:00Z"))
    by_name = {(s["kind"], s["metadata"]["name"]): s for s in first}
    # feed the computed status back as observed status, as Kubernetes would store it
    objects = build(
        gateway_class(),
        gateway(),
        route(status=by_name["HTTPRoute", "route"]["status"]),
        pool(status=by_name["InferencePool", "pool"]["status"]),
        service(),
        pod("p0", "10.0.0.1"),
        pod("p1", "10.0.0.2"),
    )
    second = statuses(objects, now="2026-06-01T00:00:00Z")
    times = {c["lastTransitionTime"] for c in second["HTTPRoute", "route"]["parents"][0]["conditions"]}
    assert times == {"2026-01-01T00:00:00Z"}
    # the pool's picker Service disappears: ResolvedRefs flips, so only it gets the new time
    objects = build(gateway_class(), gateway(), route(), pool(status=by_name["InferencePool", "pool"]["status"]))
    third = statuses(objects, now="2026-06-01T00:00:00Z")
    conds = {c["type"]: c for c in third["InferencePool", "pool"]["parents"][0]["conditions"]}
    assert conds["ResolvedRefs"]["lastTransitionTime"] == "2026-06-01T00:00:00Z"
    assert conds["Accepted"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_status_is_deterministic():
    objects = basic()
    assert translate(objects).status(StatusOptions(now=NOW)) == translate(objects).status(StatusOptions(now=NOW))
