"""The opt-in Envoy Gateway hooks compose what `poolgate translate --target envoy-gateway` emits: run the way
Metacontroller runs them (each customize hook's rules select the related objects from a cluster, labels the syncs
set applied), the attachments of every Gateway, HTTPRoute and InferencePool together are the command's objects (but
nothing left out), each in its parent's namespace, and the status entries they write are the command's status."""

from __future__ import annotations

import pytest

from hooks import envoy_gateway, gateway, httproute
from hooks.settings import HookSettings
from poolgate.api import parse_objects
from poolgate.egtarget import STATUS_CONTROLLER, EnvoyGatewayOptions, translate_envoy_gateway
from poolgate.translate.status import StatusOptions
from tests.hooks import cases
from tests.hooks.related_sizes import apply_labels, related, sync_request

GATEWAY = ("poolgate-envoy-gateway-gateways", envoy_gateway.gateway_customize, envoy_gateway.gateway_sync)
ROUTE = ("poolgate-envoy-gateway-httproutes", envoy_gateway.route_customize, envoy_gateway.route_sync)
POOL = ("poolgate-envoy-gateway-inferencepools", envoy_gateway.pool_customize, envoy_gateway.pool_sync)
HOOKS = {"Gateway": GATEWAY, "HTTPRoute": ROUTE, "InferencePool": POOL}
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg-gw", "namespace": "default"}


def cluster() -> list[dict]:
    """An Envoy Gateway Gateway admitting routes of every namespace: eg-route (default: a rule to qwen by model
    name, a 70/30 split of llama and qwen), a route of team-a to its own pool and to a pool of `models` (granted);
    and a poolgate Gateway with its route, which these hooks must leave alone."""
    eg_gw = cases.gateway("eg-gw", [cases.listener("http", 80, "All")], class_name="eg")
    rules = [{"backendRefs": [cases.pool_ref("mistral")]}, {"backendRefs": [cases.pool_ref("gemma", ns="models")]}]
    team_route = cases.route("team-route", [PARENT], rules, ns="team-a")
    return [
        *cases.classes(),
        cases.gateway_class("eg", cases.EG),
        *cases.namespaces(),
        eg_gw,
        cases.eg_route(),
        team_route,
        cases.llama(),
        cases.qwen(),
        *cases.pickers(),
        cases.pool("mistral", [8000], "mistral-epp", ns="team-a"),
        cases.service("mistral-epp", "team-a", cluster_ip="10.96.10.9"),
        cases.pool("gemma", [8000], "gemma-epp", ns="models"),
        cases.service("gemma-epp", "models", cluster_ip="10.96.10.10"),
        cases.grant("models", "team-a"),
        cases.gw_a(),
        cases.llm_route(),
    ]


def run(objects: list[dict], kind: str, settings: HookSettings) -> list[tuple[dict, dict]]:
    """(parent, sync response) for every object of `kind`, with the labels each response sets applied."""
    controller, customize, sync = HOOKS[kind]
    out = []
    for parent in [o for o in objects if o["kind"] == kind]:
        answer = sync(sync_request(controller, parent, related(customize, parent, objects, settings)), settings)
        apply_labels(parent, answer.get("labels") or {})
        out.append((parent, answer))
    return out


@pytest.mark.parametrize("at_user_gateway", [False, True], ids=["sibling", "at-user-gateway"])
def test_the_attachments_and_status_of_every_parent_are_what_translate_emits(at_user_gateway):
    settings = HookSettings(envoy_gateway_at_user_gateway=at_user_gateway)
    objects = cluster()
    for kind in ("Gateway", "HTTPRoute"):  # once, as on a cluster where the hooks have run: labels flow to pools
        run(objects, kind, settings)
    answers = [pair for kind in ("Gateway", "HTTPRoute", "InferencePool") for pair in run(objects, kind, settings)]

    typed, problems = parse_objects(("cluster", o) for o in objects)
    assert not problems
    translation = translate_envoy_gateway(typed, EnvoyGatewayOptions(at_user_gateway=at_user_gateway))
    expected = translation.objects()
    composed = []
    for parent, answer in answers:
        for attachment in answer["attachments"]:
            assert attachment["metadata"]["namespace"] == parent["metadata"]["namespace"]
        composed += answer["attachments"]
    key = lambda o: (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])  # noqa: E731
    assert sorted(composed, key=key) == sorted(expected, key=key)
    assert {o["kind"] for o in composed} >= {"HTTPRoute", "EnvoyPatchPolicy", "Service", "Backend", "ReferenceGrant"}
    assert ("Gateway" in {o["kind"] for o in composed}) is not at_user_gateway

    status = translation.status(StatusOptions(now=cases.EDITED))  # the hooks take the time from managedFields
    for parent, answer in answers:
        if parent["kind"] == "Gateway":
            assert answer["status"] is None  # Envoy Gateway's
            continue
        meta = parent["metadata"]
        where = {"name": meta["name"], "namespace": meta["namespace"]}
        wanted = next(
            (s["status"]["parents"] for s in status if s["kind"] == parent["kind"] and s["metadata"] == where), []
        )
        written = (answer["status"] or {}).get("parents", [])
        assert [e for e in written if e["controllerName"] == STATUS_CONTROLLER] == wanted, meta["name"]
    served = {(p["kind"], p["metadata"]["name"]) for p, a in answers if a["status"] is not None}
    assert served == {
        ("HTTPRoute", "eg-route"),
        ("HTTPRoute", "team-route"),
        ("InferencePool", "llama"),
        ("InferencePool", "qwen"),
        ("InferencePool", "mistral"),
        ("InferencePool", "gemma"),
    }


def test_gateways_and_routes_of_poolgates_own_class_get_nothing_from_these_hooks_and_the_reverse():
    settings = HookSettings()
    objects = cluster()
    by_name = {o["metadata"]["name"]: o for o in objects}
    for kind, name in (("Gateway", "gw-a"), ("HTTPRoute", "llm-route")):
        controller, customize, sync = HOOKS[kind]
        parent = by_name[name]
        answer = sync(sync_request(controller, parent, related(customize, parent, objects, settings)), settings)
        assert (answer["attachments"], answer["status"], answer["labels"]) == ([], None, {})
    own = {"Gateway": ("poolgate-gateways", gateway.customize, gateway.sync)}
    own["HTTPRoute"] = ("poolgate-httproutes", httproute.customize, httproute.sync)
    for kind, name in (("Gateway", "eg-gw"), ("HTTPRoute", "eg-route")):
        controller, customize, sync = own[kind]
        parent = by_name[name]
        answer = sync(sync_request(controller, parent, related(customize, parent, objects, settings)), settings)
        assert answer["attachments"] == [] and answer["status"] is None


def test_the_controller_name_is_a_setting():
    objects = cluster()
    gateway_class = next(o for o in objects if o["kind"] == "GatewayClass" and o["metadata"]["name"] == "eg")
    gateway_class["spec"]["controllerName"] = "example.com/envoy-gateway-fork"
    assert all(not answer["attachments"] for _, answer in run(objects, "Gateway", HookSettings()))
    forked = HookSettings(envoy_gateway_controller_name="example.com/envoy-gateway-fork")
    names = {a["metadata"]["name"] for _, answer in run(objects, "Gateway", forked) for a in answer["attachments"]}
    assert names == {"eg-gw-poolgate"}
