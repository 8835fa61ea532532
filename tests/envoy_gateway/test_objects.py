"""What the Envoy Gateway target generates from users' objects, and the status it reports (pure functions)."""

from __future__ import annotations

import random

from poolgate.api import contract
from poolgate.api.builders import build, gateway, gateway_class, grant, pod, pool, pool_ref, route, service
from poolgate.egtarget import STATUS_CONTROLLER, EnvoyGatewayOptions, translate_envoy_gateway
from poolgate.translate import TranslateOptions
from poolgate.translate.status import StatusOptions
from tests.envoy_gateway.cases import (
    EG,
    MODEL_ROUTER,
    eg_class,
    eg_gateway,
    find,
    kinds,
    model_routing,
    rule,
    service_ref,
    split_route,
    two_pools,
)

NOW = StatusOptions(now="2026-01-01T00:00:00Z")


def generate(objects, **options) -> list[dict]:
    return translate_envoy_gateway(objects, EnvoyGatewayOptions(**options)).objects()


def status_of(objects, kind: str, name: str) -> dict:
    reported = translate_envoy_gateway(objects).status(NOW)
    return next(s["status"] for s in reported if s["kind"] == kind and s["metadata"]["name"] == name)


def conditions(entry: dict) -> dict[str, dict]:
    return {c["type"]: c for c in entry["conditions"]}


def test_a_pool_route_is_served_by_a_companion_route_on_a_poolgate_gateway():
    out = generate(two_pools())
    assert kinds(out) == [
        "Service",
        "Service",
        "Backend",
        "Backend",
        "Gateway",
        "HTTPRoute",
        "ClientTrafficPolicy",
        "BackendTrafficPolicy",
        "BackendTrafficPolicy",
        "EnvoyExtensionPolicy",
        "EnvoyExtensionPolicy",
        "EnvoyPatchPolicy",
    ]
    sibling = find(out, "Gateway")
    assert sibling["metadata"]["name"] == "gw-poolgate" and sibling["spec"]["gatewayClassName"] == "eg"
    assert sibling["spec"]["listeners"] == [
        {"name": "http", "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}
    ]
    companion = find(out, "HTTPRoute", "models-poolgate")
    assert companion["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-poolgate", "namespace": "default"}
    ]
    llama, qwen, docs = companion["spec"]["rules"]
    assert [r["name"] for r in (llama, qwen, docs)] == ["rule-0", "rule-1", "rule-2"]
    assert llama["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"type": "Exact", "name": "x-pool", "value": "llama"}],
        }
    ]
    assert llama["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "llama-poolgate", "port": p, "weight": 1} for p in (8000, 8001)
    ]
    assert llama["timeouts"] == {"request": "0s"}
    assert docs["backendRefs"] == [{"group": "", "kind": "Service", "name": "docs", "port": 8080, "weight": 1}]
    assert "timeouts" not in docs
    llama_service = find(out, "Service", "llama-poolgate")["spec"]
    assert llama_service["selector"] == {"app": "llama"}
    assert [(p["port"], p["targetPort"], p["appProtocol"]) for p in llama_service["ports"]] == [
        (8000, 8000, "kubernetes.io/h2c"),
        (8001, 8001, "kubernetes.io/h2c"),
    ]
    extension = find(out, "EnvoyExtensionPolicy", "models-poolgate-llama")["spec"]
    assert extension["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "models-poolgate", "sectionName": "rule-0"}
    ]
    (ext_proc,) = extension["extProc"]
    assert ext_proc["backendRefs"] == [
        {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "models-llama-epp-default-poolgate", "port": 9002}
    ]
    picker = find(out, "Backend", "models-llama-epp-default-poolgate")["spec"]  # TLS, as the picker serves by default
    host = "llama-epp.default.svc.cluster.local"
    assert picker == {
        "endpoints": [{"fqdn": {"hostname": host, "port": 9002}}],
        "tls": {"insecureSkipVerify": True, "sni": host, "alpnProtocols": ["h2"]},
    }
    assert ext_proc["metadata"] == {
        "accessibleNamespaces": ["envoy.lb", "envoy.lb.subset_hint"],
        "writableNamespaces": ["envoy.lb"],
    }
    traffic = find(out, "BackendTrafficPolicy", "models-poolgate-llama")["spec"]
    assert traffic["targetRefs"] == extension["targetRefs"]
    assert traffic["loadBalancer"]["endpointOverride"] == {
        "extractFrom": [{"header": "x-gateway-destination-endpoint"}]
    }
    assert traffic["retry"]["numRetries"] == 2
    client = find(out, "ClientTrafficPolicy", "gw-poolgate")["spec"]
    assert client["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-poolgate"}]
    assert client["headers"]["earlyRequestHeaders"]["remove"] == [
        *contract.GATEWAY_ONLY_HEADERS,
        contract.SPLIT_SHARE_HEADER,
    ]
    assert client["timeout"]["http"] == {
        "requestHeadersReceivedTimeout": "10s",
        "requestReceivedTimeout": "60s",
        "streamIdleTimeout": "3600s",
    }  # as poolgate's own Envoy
    patch = find(out, "EnvoyPatchPolicy", "gw-poolgate")["spec"]
    assert patch["targetRef"] == client["targetRefs"][0] and patch["type"] == "JSONPatch"
    assert [p["name"] for p in patch["jsonPatches"]] == [
        "httproute/default/models-poolgate/rule/0",
        "httproute/default/models-poolgate/rule/1",
    ]
    policy = patch["jsonPatches"][0]["operation"]
    assert policy["op"] == "add" and policy["path"] == "/load_balancing_policy"
    config = policy["value"]["policies"][0]["typed_extension_config"]
    assert config["name"] == "envoy.load_balancing_policies.override_host"
    assert config["typed_config"]["selected_host_key"]["path"] == [{"key": "x-gateway-destination-endpoint-served"}]


def test_the_users_objects_are_never_emitted():
    inputs = two_pools()
    out = generate(inputs)
    assert not {(o.kind, o.namespace, o.name) for o in inputs} & {
        (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in out
    }
    assert all(o["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "poolgate"} for o in out)


def test_failure_mode_and_body_mode_choose_what_envoy_gateway_accepts():
    out = generate(two_pools())
    fail_close = find(out, "EnvoyExtensionPolicy", "models-poolgate-llama")["spec"]["extProc"][0]
    fail_open = find(out, "EnvoyExtensionPolicy", "models-poolgate-qwen")["spec"]["extProc"][0]
    assert (fail_close["failOpen"], fail_close["processingMode"]) == (
        False,
        {"request": {"body": "FullDuplexStreamed"}, "response": {"body": "FullDuplexStreamed"}},
    )
    assert (fail_open["failOpen"], fail_open["processingMode"]) == (
        True,
        {"request": {"body": "Buffered"}, "response": {"body": "Streamed"}},
    )
    buffered = generate(two_pools(), translate=TranslateOptions(body_mode="BUFFERED", picker_timeout_s=2.5))
    fail_close = find(buffered, "EnvoyExtensionPolicy", "models-poolgate-llama")["spec"]["extProc"][0]
    assert fail_close["processingMode"]["request"] == {"body": "Buffered"}
    assert fail_close["messageTimeout"] == "2500ms"


def test_a_split_between_a_pool_and_a_service_gives_the_service_a_share_without_a_picker():
    objects = split_route()
    out = generate(objects)
    rules = {r["name"]: r for r in find(out, "HTTPRoute")["spec"]["rules"]}
    assert [(b["name"], b["weight"]) for b in rules["rule-1"]["backendRefs"]] == [("a-poolgate", 90), ("docs", 10)]
    assert rules["rule-1-service-docs"]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "docs", "port": 9002, "weight": 1}
    ]
    (entry,) = status_of(objects, "HTTPRoute", "route")["parents"]
    assert "PartiallyInvalid" not in conditions(entry)
    patch = find(out, "EnvoyPatchPolicy")["spec"]["jsonPatches"][-1]["operation"]
    clusters = patch["value"]["weighted_clusters"]["clusters"]
    assert [(c["name"].rsplit("/", 1)[1], c["weight"], "typed_per_filter_config" in c) for c in clusters] == [
        ("5", 90, True),
        ("6", 10, False),
    ]
    assert "rule-1-service-docs" not in {
        t["sectionName"] for o in out if o["kind"] == "EnvoyExtensionPolicy" for t in o["spec"]["targetRefs"]
    }


def test_a_split_across_pools_gives_each_share_a_rule_of_its_own_and_weighted_clusters_over_them():
    out = generate(split_route())
    split, _, _, share_a, share_b, _, _ = find(out, "HTTPRoute")["spec"]["rules"]
    assert [share_a["name"], share_b["name"]] == ["rule-0-a", "rule-0-b"]
    for share, pool_name in ((share_a, "a"), (share_b, "b")):  # clients cannot match a share: the header is removed
        assert share["matches"] == [{"headers": [{"name": contract.SPLIT_SHARE_HEADER, "value": share["name"]}]}]
        assert [b["name"] for b in share["backendRefs"]] == [f"{pool_name}-poolgate"]
    assert [(b["name"], b["weight"]) for b in split["backendRefs"]] == [("a-poolgate", 80), ("b-poolgate", 20)]
    # each share is picked by its own pool's picker, in its own failure mode
    a, b = (find(out, "EnvoyExtensionPolicy", f"route-poolgate-{x}")["spec"] for x in "ab")
    assert [t["sectionName"] for t in a["targetRefs"]] == ["rule-2", "rule-0-a", "rule-1-a"]
    assert [t["sectionName"] for t in b["targetRefs"]] == ["rule-0-b"]
    assert (a["extProc"][0]["failOpen"], b["extProc"][0]["failOpen"]) == (False, True)
    traffic = find(out, "BackendTrafficPolicy", "route-poolgate-rule-0")["spec"]
    assert [t["sectionName"] for t in traffic["targetRefs"]] == ["rule-0"]
    assert traffic["retry"]["numRetries"] == 2 and "endpointOverride" not in traffic["loadBalancer"]
    patches = find(out, "EnvoyPatchPolicy")["spec"]["jsonPatches"]
    assert [p["name"] for p in patches] == [
        "httproute/default/route-poolgate/rule/2",
        "httproute/default/route-poolgate/rule/3",
        "httproute/default/route-poolgate/rule/4",
        "httproute/default/route-poolgate/rule/5",
        "default/gw-poolgate/http",
        "default/gw-poolgate/http",
    ]
    split_patch = patches[-2]
    assert split_patch["type"] == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    operation = split_patch["operation"]
    assert (operation["op"], operation["path"]) == ("replace", "/route")
    assert operation["jsonPath"] == (
        "$.virtual_hosts[*].routes[?(@.route.cluster=='httproute/default/route-poolgate/rule/0')]"
    )
    clusters = operation["value"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in clusters] == [
        ("httproute/default/route-poolgate/rule/3", 80),
        ("httproute/default/route-poolgate/rule/4", 20),
    ]
    assert [list(c["typed_per_filter_config"]) for c in clusters] == [
        ["envoy.filters.http.ext_proc/envoyextensionpolicy/default/route-poolgate-a/extproc/0"],
        ["envoy.filters.http.ext_proc/envoyextensionpolicy/default/route-poolgate-b/extproc/0"],
    ]
    assert operation["value"]["retry_policy"] == {"retry_on": "connect-failure,refused-stream,reset", "num_retries": 2}


def test_pools_sharing_one_picker_are_refused_because_envoy_gateway_cannot_name_the_pool():
    objects = build(
        eg_class(),
        eg_gateway(),
        service("epp"),
        pool("a"),
        pool("b"),
        route(rules=[rule(pool_ref("a"), header="a"), rule(pool_ref("b"), header="b")]),
    )
    out = generate(objects)
    assert all("backendRefs" not in r for r in find(out, "HTTPRoute")["spec"]["rules"])
    assert "EnvoyExtensionPolicy" not in kinds(out) and "Service" not in kinds(out)
    for name in ("a", "b"):
        (entry,) = status_of(objects, "InferencePool", name)["parents"]
        refs = conditions(entry)["ResolvedRefs"]
        assert (refs["status"], refs["reason"]) == ("False", "InvalidExtensionRef")
        assert "shared by InferencePools default/a, default/b" in refs["message"]
    alone = build(eg_class(), eg_gateway(), service("epp"), pool("a"), pool("b"), route(rules=[rule(pool_ref("a"))]))
    assert "EnvoyExtensionPolicy" in kinds(generate(alone))  # an unused pool does not count


def test_a_pool_in_another_namespace_gets_grants_naming_exactly_its_services():
    base = [
        eg_class(),
        eg_gateway(),
        route(rules=[rule(pool_ref("pool", namespace="ml"))]),
        pool(namespace="ml"),
        service(namespace="ml"),
    ]
    out = generate(build(*base, grant("ml", "default")), picker_tls=False)
    backend = find(out, "HTTPRoute")["spec"]["rules"][0]["backendRefs"][0]
    assert (backend["name"], backend["namespace"]) == ("pool-poolgate", "ml")
    assert find(out, "EnvoyExtensionPolicy")["spec"]["extProc"][0]["backendRefs"] == [
        {"name": "epp", "port": 9002, "namespace": "ml"}
    ]
    grants = {g["metadata"]["name"]: g["spec"] for g in out if g["kind"] == "ReferenceGrant"}
    assert grants == {
        "pool-poolgate-httproute-default": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
            "to": [{"group": "", "kind": "Service", "name": "pool-poolgate"}],
        },
        "pool-poolgate-envoyextensionpolicy-default": {
            "from": [{"group": "gateway.envoyproxy.io", "kind": "EnvoyExtensionPolicy", "namespace": "default"}],
            "to": [{"group": "", "kind": "Service", "name": "epp"}],
        },
    }
    assert all(g["metadata"]["namespace"] == "ml" for g in out if g["kind"] == "ReferenceGrant")
    over_tls = generate(build(*base, grant("ml", "default")))  # the picker's Backend lives in the route's namespace
    assert [g["metadata"]["name"] for g in over_tls if g["kind"] == "ReferenceGrant"] == [
        "pool-poolgate-httproute-default"
    ]
    assert find(over_tls, "Backend", "route-epp-ml-poolgate")["spec"]["endpoints"] == [
        {"fqdn": {"hostname": "epp.ml.svc.cluster.local", "port": 9002}}
    ]
    ungranted = generate(build(*base))
    assert "ReferenceGrant" not in kinds(ungranted) and "Service" not in kinds(ungranted)
    assert "backendRefs" not in find(ungranted, "HTTPRoute")["spec"]["rules"][0]


def test_status_entries_are_poolgates_and_other_controllers_entries_stay():
    eg_entry = {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "default"},
        "controllerName": EG,
        "conditions": [
            {
                "type": "ResolvedRefs",
                "status": "False",
                "reason": "InvalidKind",
                "message": "x",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        ],
    }
    stale = dict(eg_entry, controllerName=STATUS_CONTROLLER)
    objects = build(
        eg_class(),
        eg_gateway(),
        service(),
        pool(),
        route(status={"parents": [eg_entry]}),
        route("plain", rules=[rule(service_ref("epp", 9002))], status={"parents": [eg_entry, stale]}),
    )
    reported = translate_envoy_gateway(objects).status(NOW)
    assert sorted((s["kind"], s["metadata"]["name"]) for s in reported) == [
        ("HTTPRoute", "plain"),
        ("HTTPRoute", "route"),
        ("InferencePool", "pool"),
    ]
    routes = {s["metadata"]["name"]: s["status"]["parents"] for s in reported if s["kind"] == "HTTPRoute"}
    kept, ours = routes["route"]
    assert kept == eg_entry and ours["controllerName"] == STATUS_CONTROLLER
    assert conditions(ours)["Accepted"]["message"] == (
        "Route is accepted; Envoy Gateway serves it as HTTPRoute default/route-poolgate on Gateway default/gw-poolgate"
    )
    assert routes["plain"] == [eg_entry]  # a route without pools keeps no entry of ours
    (pool_entry,) = status_of(objects, "InferencePool", "pool")["parents"]
    assert pool_entry["controllerName"] == STATUS_CONTROLLER
    assert pool_entry["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "gw",
        "namespace": "default",
    }


def test_https_listeners_are_served_and_copied_with_their_certificates():
    https = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "hostname": "ai.example.com",
        "tls": {"certificateRefs": [{"name": "ai-cert"}]},
    }
    objects = build(
        eg_class(),
        eg_gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}, https]),
        service(),
        pool(),
        route(parents=[{"name": "gw", "sectionName": "https"}]),
    )
    out = generate(objects)
    (listener,) = find(out, "Gateway")["spec"]["listeners"]  # only the listener the route attaches to
    assert listener["tls"] == {
        "mode": "Terminate",
        "certificateRefs": [{"group": "", "kind": "Secret", "name": "ai-cert"}],
    }
    assert find(out, "HTTPRoute")["spec"]["parentRefs"][0]["sectionName"] == "https"


def test_gateways_of_other_classes_are_left_alone():
    objects = build(gateway_class(), gateway("own"), eg_class(), service(), pool(), route(parents=[{"name": "own"}]))
    translation = translate_envoy_gateway(objects)
    assert translation.objects() == []
    assert translation.warnings() == [
        "no Gateway of a class with controllerName gateway.envoyproxy.io/gatewayclass-controller: nothing to generate"
    ]


def test_a_route_no_envoy_gateway_listener_accepts_gets_no_companion():
    objects = build(
        eg_class(),
        eg_gateway(),
        service("epp", namespace="ml"),
        pool(namespace="ml"),
        route(namespace="ml", parents=[{"name": "gw", "namespace": "default"}]),
    )
    translation = translate_envoy_gateway(objects)
    assert translation.objects() == []
    assert translation.warnings() == [
        "HTTPRoute ml/route: no parentRef is accepted by an Envoy Gateway Gateway; see its status"
    ]
    (entry,) = status_of(objects, "HTTPRoute", "route")["parents"]
    assert conditions(entry)["Accepted"]["reason"] == "NotAllowedByListeners"


def test_companion_rule_names_stay_unique():
    objects = build(
        eg_class(),
        eg_gateway(),
        service(),
        pool(),
        route(
            rules=[
                rule(pool_ref("pool"), header="a"),
                rule(pool_ref("pool"), header="b", name="rule-0"),
                rule(pool_ref("pool"), header="c", name="chat"),
            ]
        ),
    )
    out = generate(objects)
    assert [r["name"] for r in find(out, "HTTPRoute")["spec"]["rules"]] == ["poolgate-rule-0", "rule-0", "chat"]
    assert [t["sectionName"] for t in find(out, "EnvoyExtensionPolicy")["spec"]["targetRefs"]] == [
        "poolgate-rule-0",
        "rule-0",
        "chat",
    ]


def test_a_pool_without_picker_is_balanced_by_envoy_gateway_alone():
    objects = build(eg_class(), eg_gateway(), pool(picker=None), route(), pod("p0", "10.0.0.1"))
    out = generate(objects)
    assert "EnvoyExtensionPolicy" not in kinds(out) and "EnvoyPatchPolicy" not in kinds(out)
    traffic = find(out, "BackendTrafficPolicy")["spec"]
    assert traffic["loadBalancer"] == {"type": "LeastRequest"} and "retry" not in traffic


def test_the_gateway_class_of_the_sibling_can_be_chosen():
    assert (
        find(generate(two_pools(), gateway_class="eg-inference"), "Gateway")["spec"]["gatewayClassName"]
        == "eg-inference"
    )


def test_output_does_not_depend_on_input_order():
    objects = two_pools()
    shuffled = list(objects)
    random.Random(7).shuffle(shuffled)
    assert generate(shuffled) == generate(objects)


def test_model_routing_calls_the_model_router_first_then_only_the_routed_pools_picker():
    out = generate(model_routing(), model_router=MODEL_ROUTER)
    rules = find(out, "HTTPRoute")["spec"]["rules"]
    assert rules[-1] == {"name": "poolgate-model-routing", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
    policy = find(out, "EnvoyExtensionPolicy", "route-poolgate-model-routing")["spec"]
    assert [t["sectionName"] for t in policy["targetRefs"]] == ["rule-0", "rule-1", "poolgate-model-routing"]
    router, a, b = policy["extProc"]  # Envoy Gateway orders a policy's entries: the model router runs first
    assert router["backendRefs"][0]["name"] == "route-model-router-default-poolgate"
    assert router["processingMode"] == {"request": {"body": "FullDuplexStreamed"}} and not router["failOpen"]
    assert [e["backendRefs"][0]["name"] for e in (a, b)] == [
        "route-epp-a-default-poolgate",
        "route-epp-b-default-poolgate",
    ]
    assert (a["failOpen"], b["failOpen"]) == (False, True)  # each pool keeps its failure mode
    # the per-pool policies keep only the rules that are not model-routed (here: the split's shares)
    assert [t["sectionName"] for t in find(out, "EnvoyExtensionPolicy", "route-poolgate-a")["spec"]["targetRefs"]] == [
        "rule-2-a"
    ]
    disables = [
        p
        for p in find(out, "EnvoyPatchPolicy")["spec"]["jsonPatches"]
        if p["operation"]["op"] == "add" and p["operation"].get("jsonPath")
    ]
    assert [
        (p["operation"]["jsonPath"].split("'")[1], p["operation"]["path"].rsplit("~1", 1)[1]) for p in disables
    ] == [
        ("httproute/default/route-poolgate/rule/0", "2"),  # pool a's rule: b's picker (entry 2) off
        ("httproute/default/route-poolgate/rule/1", "1"),  # pool b's rule: a's picker (entry 1) off
    ]
    assert disables[0]["operation"]["value"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
        "disabled": True,
    }
    removed = find(out, "ClientTrafficPolicy")["spec"]["headers"]["earlyRequestHeaders"]["remove"]
    assert {"x-gateway-model-name", "x-gateway-base-model-name"} <= set(removed)
    assert "poolgate-model-routing" not in {
        r["name"] for r in find(generate(model_routing()), "HTTPRoute")["spec"]["rules"]
    }


def test_at_the_users_gateway_the_companion_outranks_the_users_rules_and_trusts_no_client_header():
    objects = model_routing()
    at_user = translate_envoy_gateway(objects, EnvoyGatewayOptions(at_user_gateway=True, model_router=MODEL_ROUTER))
    out = at_user.objects()
    assert "ClientTrafficPolicy" not in kinds(out) and [g for g in out if g["kind"] == "Gateway"] == []
    companion = find(out, "HTTPRoute")
    assert [p["name"] for p in companion["spec"]["parentRefs"]] == ["gw"]
    sibling = find(generate(objects, model_router=MODEL_ROUTER), "HTTPRoute")  # same rules, one more header match
    host = {"type": "RegularExpression", "name": "host", "value": ".*"}
    assert len(companion["spec"]["rules"]) == len(sibling["spec"]["rules"]) - 1  # no model routing rule
    for ours, theirs in zip(companion["spec"]["rules"], sibling["spec"]["rules"]):
        assert [m["headers"] for m in ours["matches"]] == [[*m.get("headers", []), host] for m in theirs["matches"]]
    patch = find(out, "EnvoyPatchPolicy")["spec"]
    assert patch["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    overrides = [p["operation"] for p in patch["jsonPatches"] if p["operation"].get("path") == "/load_balancing_policy"]
    assert overrides
    for operation in overrides:
        sources = operation["value"]["policies"][0]["typed_extension_config"]["typed_config"]["override_host_sources"]
        assert sources == [{"metadata": {"key": "envoy.lb", "path": [{"key": contract.DESTINATION_HEADER}]}}]
    for policy in (o for o in out if o["kind"] == "BackendTrafficPolicy"):
        assert "endpointOverride" not in policy["spec"]["loadBalancer"]
    assert all(len(o["spec"]["extProc"]) == 1 for o in out if o["kind"] == "EnvoyExtensionPolicy")
    (route_status,) = [s for s in at_user.status(NOW) if s["kind"] == "HTTPRoute"]
    (entry,) = route_status["status"]["parents"]
    assert conditions(entry)["Accepted"]["message"].endswith("on Gateway default/gw")


def test_at_the_users_gateway_split_patches_name_the_users_route_configuration():
    out = generate(split_route(), at_user_gateway=True)
    replaced = [p for p in find(out, "EnvoyPatchPolicy")["spec"]["jsonPatches"] if p["operation"]["op"] == "replace"]
    assert replaced and {p["name"] for p in replaced} == {"default/gw/http"}
