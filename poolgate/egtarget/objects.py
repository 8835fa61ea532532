"""The Kubernetes objects that make Envoy Gateway serve a Plan, one builder per kind (see docs/envoy-gateway.md):

- per Envoy Gateway Gateway with inference routes: a sibling Gateway owned by poolgate (same class, copies of the
  listeners those routes attach to), a ClientTrafficPolicy (strip picker-only headers early, raise the buffer limit)
  and an EnvoyPatchPolicy (override_host with envoy.lb metadata and the served-endpoint report on each pool cluster);
- per route: a companion HTTPRoute on the siblings, InferencePool backendRefs replaced by a Service per pool;
- per route and pool: an EnvoyExtensionPolicy (ext_proc to the pool's picker) and a BackendTrafficPolicy (endpoint
  override from the picker's header, retries on its fallbacks, circuit breakers, Envoy's errors as OpenAI JSON),
  both targeting the pool's rules; a TLS Backend per picker;
- per rule splitting across pools: a share rule per pool (and Service), a BackendTrafficPolicy for the split rule,
  and a patch turning its routes into weighted clusters over the shares, each with its pool's picker;
- per route with model routing (and a model router Service): a catch-all rule, one EnvoyExtensionPolicy calling
  the model router then the pools' pickers, and patches that leave only the routed pool's picker on each rule;
- per pool: a Service selecting its pods on its target ports; ReferenceGrants for cross-namespace pools.
The user's objects are never changed."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from dataclasses import dataclass

from picker.server.errors import RequestError
from poolgate.api import contract
from poolgate.api.base import GATEWAY_GROUP
from poolgate.api.gateway import Gateway
from poolgate.egtarget import names
from poolgate.egtarget.plan import Plan, RoutePlan, RulePlan
from poolgate.translate import ir, xds
from poolgate.translate.naming import dns_label
from poolgate.translate.options import TranslateOptions
from poolgate.translate.policy import CALLOUT_FAILURE_STATUS, CalloutPolicy, CircuitLimits, ClientTimeouts, Policy
from poolgate.translate.resolve import GatewayState, PoolTarget

GATEWAY_API = f"{GATEWAY_GROUP}/v1"
EG_GROUP = "gateway.envoyproxy.io"
EG_API = f"{EG_GROUP}/v1alpha1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "poolgate"}
SOURCE_ANNOTATION = "poolgate.dev/generated-from"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_CONFIGURATION_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
FILTER_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
EXT_PROC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
BODY_MODES = {"BUFFERED": "Buffered", "STREAMED": "Streamed", "FULL_DUPLEX_STREAMED": "FullDuplexStreamed"}
# The errors Envoy itself answers on a pool's rules (its local replies: a failed picker call, no reachable endpoint, a
# body over the buffer limit, a timeout), rewritten into the OpenAI-style JSON the picker and the model servers answer.
EDGE_ERRORS = {
    413: "the request body is larger than the gateway's buffer limit",
    500: "the gateway failed to handle the request",
    502: "the model server answered with an invalid response",
    503: "no endpoint of the pool could serve the request (its endpoint picker or its model servers are unavailable)",
    504: "the model server did not answer in time",
}
# The picker's own refusals are local replies too, already JSON: they keep their body (the format's %LOCAL_REPLY_BODY%).
JSON_REPLY = {"name": "content-type", "value": {"type": "Prefix", "value": "application/json"}}
# Matches every request (Envoy matches a `host` header matcher against :authority): the one more header match by
# which a companion rule outranks the user's identical rule on the user's own Gateway.
OUTRANKING_MATCH = {"type": "RegularExpression", "name": "host", "value": ".*"}
KIND_ORDER = (
    "Service",
    "ReferenceGrant",
    "Backend",
    "Gateway",
    "HTTPRoute",
    "ClientTrafficPolicy",
    "BackendTrafficPolicy",
    "EnvoyExtensionPolicy",
    "EnvoyPatchPolicy",
)


def build_objects(
    plan: Plan,
    options: TranslateOptions,
    gateway_class: str | None = None,
    picker_tls: bool = True,
    model_router: CalloutService | None = None,
    at_user_gateway: bool = False,
) -> list[dict]:
    """Every object of the plan, in a deterministic order (by kind, then namespace and name); with `picker_tls` the
    pickers are called over TLS through a Backend each; with a `model_router` Service, rules that match on the model
    name are routed by it (see docs/envoy-gateway.md, Body-based model routing). With `at_user_gateway` the
    companion routes attach to the user's Gateways instead of siblings, winning over the user's rules by one more
    header match, and picks hold through envoy.lb metadata only (docs/envoy-gateway.md, At the user's own address);
    it routes no rule by model."""
    out = []
    serving: dict[tuple[str, str], dict[tuple[str, str], RoutePlan]] = defaultdict(dict)  # Gateway -> its routes
    routed: dict[tuple[str, str], list[RulePlan]] = {}  # route -> its model-routed rules
    for route_plan in plan.routes:
        if not route_plan.parents:
            continue
        routing_by_model = model_router is not None and not at_user_gateway
        model_rules = (
            [r for r in route_plan.rules if r.model_routed and r.picker is not None] if routing_by_model else []
        )
        out.append(companion_route(route_plan, plan.policy.route_timeout_s, bool(model_rules), at_user_gateway))
        for result in route_plan.parents:
            serving[(result.gateway.namespace, result.gateway.name)][route_plan.key] = route_plan
        for target, rules in _rules_by_pool(route_plan):
            metadata = _policy_metadata(route_plan, target.pool.name, target.pool.ref)
            out.append(
                backend_traffic_policy(
                    route_plan, metadata, rules, plan.policy.circuit_limits, options, not at_user_gateway
                )
            )
            if rules[0].picker is not None:
                if picker_tls:
                    out.append(callout_backend(route_plan, _picker_service(target), options))
                own = [r for r in rules if r not in model_rules]  # model-routed rules: in the model routing policy
                if own:
                    out.append(extension_policy(route_plan, target, own, plan.policy.circuit_limits, picker_tls))
        if model_rules and model_router is not None:
            routed[route_plan.key] = model_rules
            out.append(model_routing_policy(route_plan, model_rules, model_router, plan.policy, picker_tls))
            if picker_tls:
                out.append(callout_backend(route_plan, model_router, options))
        for rule in route_plan.rules:
            if rule.shares:
                metadata = _policy_metadata(route_plan, rule.name, route_plan.route.route.ref)
                out.append(backend_traffic_policy(route_plan, metadata, [rule], plan.policy.circuit_limits, options))
    gateways = {(state.gateway.namespace, state.gateway.name): state for state in plan.graph.gateways}
    policy = override_host_policy(plan.policy.circuit_limits, options, trust_header=not at_user_gateway)
    for key, route_plans in sorted(serving.items()):
        state = gateways[key]
        if not at_user_gateway:
            out.append(sibling_gateway(state, set(route_plans), gateway_class))
            model_routing = any(key in routed for key in route_plans)
            out.append(client_traffic_policy(state.gateway, plan.policy.client_timeouts, options, model_routing))
        patches = [
            _override_host_patch(rp, rule, policy)
            for rp in route_plans.values()
            for rule in rp.rules
            if rule.picker is not None
        ]
        patches += [
            _split_patch(state.gateway, listener, rp, rule, plan.policy.route_timeout_s, at_user_gateway)
            for rp in route_plans.values()
            for rule in rp.rules
            if rule.shares
            for listener in _listeners_of(state, rp)
        ]
        patches += [
            patch
            for key, rp in route_plans.items()
            if key in routed
            for listener in _listeners_of(state, rp)
            for patch in _model_routing_patches(state.gateway, listener, rp, routed[key])
        ]
        if patches:
            out.append(patch_policy(state.gateway, patches, at_user_gateway))
    served_pools = {
        (r.pool.pool.namespace, r.pool.pool.name): r.pool
        for rp in plan.routes
        if rp.parents
        for r in rp.rules
        if r.pool is not None
    }
    out += [pool_service(target) for _, target in sorted(served_pools.items())]
    out += reference_grants(plan, picker_tls)
    out = list({(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in out}.values())
    return sorted(out, key=lambda o: (KIND_ORDER.index(o["kind"]), o["metadata"]["namespace"], o["metadata"]["name"]))


def _metadata(name: str, namespace: str, source: str) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(MANAGED_BY),
        "annotations": {SOURCE_ANNOTATION: source},
    }


def _pruned(value):
    """A JSON value without empty lists and objects (the API models write unset lists as [])."""
    if isinstance(value, dict):
        items = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v not in ([], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _duration(seconds: float) -> str:
    """A Gateway API / Envoy Gateway Duration."""
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{round(seconds * 1000)}ms"


def _rules_by_pool(route_plan: RoutePlan) -> list[tuple[PoolTarget, list[RulePlan]]]:
    """The route's served pools, by namespace and name, each with the rules that forward to it."""
    out: dict[tuple[str, str], tuple[PoolTarget, list[RulePlan]]] = {}
    for rule in route_plan.rules:
        if rule.pool is not None:
            out.setdefault((rule.pool.pool.namespace, rule.pool.pool.name), (rule.pool, []))[1].append(rule)
    return [entry for _, entry in sorted(out.items(), key=lambda item: item[0])]


# --- Gateway, HTTPRoute, Service ----------------------------------------------------------------------------------


def sibling_gateway(state: GatewayState, routes: set[tuple[str, str]], gateway_class: str | None) -> dict:
    """The poolgate-owned Gateway: the user's Gateway's class (or `gateway_class`) and copies of the listeners the
    inference routes attach to, so their parentRefs' sectionName and port keep their meaning."""
    gateway = state.gateway
    listeners = [
        ls.listener.to_json()
        for ls in state.listeners
        if any((a.route.route.namespace, a.route.route.name) in routes for a in ls.attached)
    ]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": _metadata(names.sibling_gateway(gateway.name), gateway.namespace, gateway.ref),
        "spec": _pruned({"gatewayClassName": gateway_class or gateway.spec.gateway_class_name, "listeners": listeners}),
    }


def companion_route(
    route_plan: RoutePlan, route_timeout_s: float, model_routing: bool = False, at_user_gateway: bool = False
) -> dict:
    """The user's route on the sibling Gateways (or, `at_user_gateway`, on the user's own, each match with one more
    header match than the user's so that it wins): same hostnames, matches and filters; each pool rule forwards to
    the pool's Service on every target port, with `route_timeout_s` unless the rule sets its own request timeout;
    rules this target cannot serve keep only their matches (500)."""
    route = route_plan.route.route
    parents = []
    for result in route_plan.parents:
        ref = result.parent_ref.to_json()
        ref.update(name=_served_gateway(result.gateway, at_user_gateway), namespace=result.gateway.namespace)
        if ref not in parents:
            parents.append(ref)
    rules = [_companion_rule(route.namespace, rule, route_timeout_s) for rule in route_plan.rules]
    if at_user_gateway:
        rules = [_outranking(rule) for rule in rules]
    if model_routing:  # no backends: a request whose model no rule matches answers 500 after the callouts
        rules.append({"name": names.MODEL_ROUTING_RULE, "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]})
    spec = {"parentRefs": parents, "hostnames": list(route.spec.hostnames), "rules": rules}
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _metadata(names.companion_route(route.name), route.namespace, route.ref),
        "spec": _pruned(spec),
    }


def _served_gateway(gateway: Gateway, at_user_gateway: bool) -> str:
    """The name of the Gateway the companion routes attach to: the sibling, or the user's own."""
    return gateway.name if at_user_gateway else names.sibling_gateway(gateway.name)


def _outranking(rule: dict) -> dict:
    """The rule with a `host` header match every request passes added to each of its matches (a rule without
    matches gets Gateway API's default, PathPrefix /): Envoy Gateway orders routes of equal path by their number of
    header matches before their age, so the companion's rule wins over the user's identical one."""
    matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
    outranking = [{**m, "headers": [*m.get("headers", []), dict(OUTRANKING_MATCH)]} for m in matches]
    return {**rule, "matches": outranking}


def _companion_rule(route_namespace: str, plan: RulePlan, route_timeout_s: float) -> dict:
    rule = plan.rule.rule.to_json()
    if plan.share_of is None:
        out = {"name": plan.name, "matches": rule["matches"]}
    else:  # a pool's share of a split: reachable only through the split rule's weighted clusters
        out = {"name": plan.name, "matches": [{"headers": [{"name": contract.SPLIT_SHARE_HEADER, "value": plan.name}]}]}
    if not plan.served:
        return out
    out["filters"] = rule.get("filters", [])
    if plan.pool is not None:
        out["backendRefs"] = _pool_backends(plan.pool, route_namespace, 1)
    elif plan.service is not None:  # a Service's share of a split
        out["backendRefs"] = [{**plan.service.ref.to_json(), "weight": 1}]
    elif plan.shares:  # what Envoy Gateway builds the split rule's route from; the patch replaces its cluster
        out["backendRefs"] = [
            ref
            for share in plan.shares
            for ref in (
                _pool_backends(share.rule.pool, route_namespace, share.weight)
                if share.rule.service is None
                else [{**share.rule.service.ref.to_json(), "weight": share.weight}]
            )
        ]
    else:  # Services (or a redirect): as the user wrote them; weight-0 pool refs dropped
        out["backendRefs"] = [
            b.ref.to_json() for b in plan.rule.backends if (b.ref.group, b.ref.kind) == ("", "Service")
        ]
    timeouts = dict(rule.get("timeouts", {}))
    if plan.pool is not None or plan.shares:
        timeouts.setdefault("request", _duration(route_timeout_s))  # as poolgate's own Envoy
    out["timeouts"] = timeouts
    return out


def _pool_backends(target: PoolTarget | None, route_namespace: str, weight: int) -> list[dict]:
    """The pool's Service on each of its target ports."""
    assert target is not None  # pool rules and shares always have their pool
    pool = target.pool
    namespace = {"namespace": pool.namespace} if pool.namespace != route_namespace else {}
    return [
        {
            "group": "",
            "kind": "Service",
            "name": names.pool_service(pool.name),
            **namespace,
            "port": port.number,
            "weight": weight,
        }
        for port in pool.spec.target_ports
    ]


def pool_service(target: PoolTarget) -> dict:
    """A ClusterIP Service selecting the pool's pods, one port per target port (HTTP/2 for h2c pools)."""
    pool = target.pool
    protocol = {"appProtocol": "kubernetes.io/h2c"} if pool.spec.app_protocol == "kubernetes.io/h2c" else {}
    ports = [
        {"name": f"port-{p.number}", "port": p.number, "targetPort": p.number, "protocol": "TCP", **protocol}
        for p in pool.spec.target_ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(names.pool_service(pool.name), pool.namespace, pool.ref),
        "spec": {"selector": dict(pool.spec.selector.match_labels), "ports": ports},
    }


# --- Envoy Gateway policies ---------------------------------------------------------------------------------------


def _rule_targets(route_plan: RoutePlan, rules: list[RulePlan]) -> list[dict]:
    name = names.companion_route(route_plan.route.route.name)
    return [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": name, "sectionName": rule.name} for rule in rules]


def _policy_metadata(route_plan: RoutePlan, part: str, source: str) -> dict:
    """A policy of the route's companion for one pool (or one split rule)."""
    route = route_plan.route.route
    sources = route.ref if source == route.ref else f"{route.ref}, {source}"
    return _metadata(names.route_policy(route.name, part), route.namespace, sources)


@dataclass(frozen=True)
class CalloutService:
    """A gRPC ext_proc Service poolgate's policies call: a pool's picker or the model router."""

    namespace: str
    name: str
    port: int
    source: str  # what names it (for the generated-from annotation)


def _picker_service(target: PoolTarget) -> CalloutService:
    picker = target.picker
    assert picker is not None  # built for pools with a picker only
    source = f"{target.pool.ref}, picker Service {picker.service.namespace}/{picker.service.name}"
    return CalloutService(picker.service.namespace, picker.service.name, picker.port, source)


def _ext_proc(
    route_key: tuple[str, str], service: CalloutService, call: CalloutPolicy, limits: CircuitLimits, picker_tls: bool
) -> dict:
    """One extProc entry: the Service (through its TLS Backend with `picker_tls`) called as `call` says (Envoy
    Gateway refuses failOpen with full-duplex bodies, which the policy never asks for), its backend lifted to
    `limits` (a gRPC stream per request in flight, for as long as it runs); endpoint pickers exchange envoy.lb."""
    backend: dict[str, str | int]
    route_namespace, route_name = route_key
    if picker_tls:
        name = names.picker_backend(route_name, service.name, service.namespace)
        backend = {"group": EG_GROUP, "kind": "Backend", "name": name, "port": service.port}
    else:
        backend = {"name": service.name, "port": service.port}
        if service.namespace != route_namespace:
            backend["namespace"] = service.namespace
    mode = {"request": {"body": BODY_MODES[call.request_body]}}
    if call.response_headers:
        mode["response"] = {"body": BODY_MODES[call.response_body]}
    out = {
        "backendRefs": [backend],
        "backendSettings": {
            "circuitBreaker": {
                "maxParallelRequests": limits.max_requests,
                "maxPendingRequests": limits.max_pending_requests,
            }
        },
        "processingMode": mode,
        "failOpen": call.failure_mode_allow,
        "messageTimeout": _duration(call.timeout_s),
        "statusOnError": CALLOUT_FAILURE_STATUS,
    }
    if call.response_headers:  # an endpoint picker: the pick, the subset hint and the served endpoint
        out["metadata"] = {
            "accessibleNamespaces": [contract.LB_METADATA_NAMESPACE, contract.SUBSET_HINT_NAMESPACE],
            "writableNamespaces": [contract.LB_METADATA_NAMESPACE],
        }
    return out


def extension_policy(
    route_plan: RoutePlan, target: PoolTarget, rules: list[RulePlan], limits: CircuitLimits, picker_tls: bool
) -> dict:
    """ext_proc to the pool's picker on the pool's rules, called as the rules' picker policy says; with
    `picker_tls` through the picker's Backend (TLS), else to its Service."""
    call = rules[0].picker
    assert call is not None  # built for pools with a picker only
    ext_proc = _ext_proc(route_plan.key, _picker_service(target), call, limits, picker_tls)
    return {
        "apiVersion": EG_API,
        "kind": "EnvoyExtensionPolicy",
        "metadata": _policy_metadata(route_plan, target.pool.name, target.pool.ref),
        "spec": {"targetRefs": _rule_targets(route_plan, rules), "extProc": [ext_proc]},
    }


def model_routing_policy(
    route_plan: RoutePlan, rules: list[RulePlan], model_router: CalloutService, policy: Policy, picker_tls: bool
) -> dict:
    """The callouts of the route's model-routed rules, in order, in one policy (Envoy Gateway orders a policy's
    extProc entries, not policies): the model router, which sets X-Gateway-Model-Name from the body and so re-matches
    the route, then each pool's picker (each rule patched to call only its own pool's). It targets those rules and
    the model routing rule, which is what a request matches before the model router ran (the filters a request runs
    are those of the route it first matched)."""
    entries = [_ext_proc(route_plan.key, model_router, policy.model_router, policy.circuit_limits, picker_tls)]
    for target in _model_pools(rules):
        call = policy.picker(target.picker.failure_open if target.picker else False)
        entries.append(_ext_proc(route_plan.key, _picker_service(target), call, policy.circuit_limits, picker_tls))
    name = names.companion_route(route_plan.route.route.name)
    targets = _rule_targets(route_plan, rules) + [
        {"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": name, "sectionName": names.MODEL_ROUTING_RULE}
    ]
    return {
        "apiVersion": EG_API,
        "kind": "EnvoyExtensionPolicy",
        "metadata": _policy_metadata(route_plan, "model-routing", model_router.source),
        "spec": {"targetRefs": targets, "extProc": entries},
    }


def _model_pools(rules: list[RulePlan]) -> list[PoolTarget]:
    """The pools of the model-routed rules, by namespace and name: entry i + 1 of the model routing policy."""
    pools = {(r.pool.pool.namespace, r.pool.pool.name): r.pool for r in rules if r.pool is not None}
    return [pools[key] for key in sorted(pools)]


def _model_routing_patches(gateway: Gateway, listener: str, route_plan: RoutePlan, rules: list[RulePlan]) -> list[dict]:
    """On each model-routed rule's routes, the other pools' pickers are disabled (ext_proc reads this when the
    request reaches it, after the model router re-matched the route)."""
    policy = names.route_policy(route_plan.route.route.name, "model-routing")
    pools = _model_pools(rules)
    out = []
    for rule in rules:
        cluster = names.rule_cluster(*route_plan.key, rule.index)
        for i, target in enumerate(pools, start=1):
            if rule.pool is not None and target.pool.ref == rule.pool.pool.ref:
                continue
            filter_name = names.ext_proc_filter(route_plan.key[0], policy, i)
            out.append(
                {
                    "type": ROUTE_CONFIGURATION_TYPE,
                    "name": f"{gateway.namespace}/{names.sibling_gateway(gateway.name)}/{listener}",
                    "operation": {
                        "op": "add",
                        "jsonPath": f"$.virtual_hosts[*].routes[?(@.route.cluster=='{cluster}')]",
                        "path": "/typed_per_filter_config/" + filter_name.replace("~", "~0").replace("/", "~1"),
                        "value": {"@type": EXT_PROC_PER_ROUTE_TYPE, "disabled": True},
                    },
                }
            )
    return out


def callout_backend(route_plan: RoutePlan, service: CalloutService, options: TranslateOptions) -> dict:
    """A picker (or model router) Service by its cluster DNS name, called over TLS (HTTP/2 by ALPN, SNI that name)
    without checking its certificate: pickers serve a self-signed one by default (poolgate's own Envoy does the same
    without --picker-ca). In the route's namespace, so the EnvoyExtensionPolicy needs no ReferenceGrant."""
    host = f"{service.name}.{service.namespace}.svc.{options.cluster_domain}"
    metadata = _metadata(
        names.picker_backend(route_plan.route.route.name, service.name, service.namespace),
        route_plan.route.route.namespace,
        service.source,
    )
    return {
        "apiVersion": EG_API,
        "kind": "Backend",
        "metadata": metadata,
        "spec": {
            "endpoints": [{"fqdn": {"hostname": host, "port": service.port}}],
            "tls": {"insecureSkipVerify": True, "sni": host, "alpnProtocols": ["h2"]},
        },
    }


def backend_traffic_policy(
    route_plan: RoutePlan,
    metadata: dict,
    rules: list[RulePlan],
    limits: CircuitLimits,
    options: TranslateOptions,
    trust_header: bool = True,
) -> dict:
    """The settings of a pool's rules (or of a split rule): least-request balancing that honours the picker's header
    (Envoy Gateway's own endpoint override, so picks hold even where EnvoyPatchPolicy is disabled), retries that walk
    the picker's fallbacks as the rules' retry policy says, the circuit-breaker `limits`, poolgate's buffer limit, and
    Envoy's own error replies as OpenAI JSON. Setting cluster fields at rule level also keeps the rule's own cluster
    name when Envoy Gateway merges backend clusters. Without `trust_header` (the header is not stripped from client
    requests) no endpoint override: the EnvoyPatchPolicy's, on envoy.lb metadata only, holds the picks."""
    spec: dict = {
        "targetRefs": _rule_targets(route_plan, rules),
        "loadBalancer": {"type": "LeastRequest"},
        "circuitBreaker": {
            "maxConnections": limits.max_connections,
            "maxPendingRequests": limits.max_pending_requests,
            "maxParallelRequests": limits.max_requests,
            "maxParallelRetries": limits.max_retries,
        },
        "connection": {"bufferLimit": options.buffer_limit_bytes},
        "responseOverride": edge_error_overrides(),
    }
    retry = rules[0].retry
    if rules[0].picker is not None and trust_header:
        spec["loadBalancer"]["endpointOverride"] = {"extractFrom": [{"header": contract.DESTINATION_HEADER}]}
    if retry is not None:
        spec["retry"] = {"numRetries": retry.num_retries, "retryOn": {"triggers": list(retry.retry_on)}}
    return {"apiVersion": EG_API, "kind": "BackendTrafficPolicy", "metadata": metadata, "spec": spec}


def edge_error_overrides() -> list[dict]:
    """Envoy's own error replies (plain text or empty) as OpenAI-style JSON with the same status; the picker's JSON
    refusals keep their body and the model servers' answers are left alone (first matching override wins)."""
    keep_json = {
        "match": {
            "statusCodes": [{"type": "Value", "value": status} for status in EDGE_ERRORS],
            "responseHeaders": [copy.deepcopy(JSON_REPLY)],
        },
        "source": "Local",
        "response": {"contentType": "application/json", "body": {"type": "Inline", "inline": "%LOCAL_REPLY_BODY%"}},
    }
    return [keep_json] + [
        {
            "match": {"statusCodes": [{"type": "Value", "value": status}]},
            "source": "Local",
            "response": {
                "contentType": "application/json",
                "body": {"type": "Inline", "inline": RequestError(status, message).body().decode()},
            },
        }
        for status, message in EDGE_ERRORS.items()
    ]


def client_traffic_policy(
    gateway: Gateway, client_timeouts: ClientTimeouts, options: TranslateOptions, model_routing: bool = False
) -> dict:
    """On the sibling: strip the headers only the picker (and, with model routing, the model router) may set before
    any filter runs, raise the buffer limit, and the client timeouts poolgate's own Envoy has (slow clients cut off,
    long silent requests allowed)."""
    removed = [*contract.GATEWAY_ONLY_HEADERS, contract.SPLIT_SHARE_HEADER]
    removed += list(contract.MODEL_ROUTER_ONLY_HEADERS) if model_routing else []
    timeouts = {
        "requestHeadersReceivedTimeout": _duration(client_timeouts.request_headers_s),
        "requestReceivedTimeout": _duration(client_timeouts.request_s),
        "streamIdleTimeout": _duration(client_timeouts.stream_idle_s),
    }
    return {
        "apiVersion": EG_API,
        "kind": "ClientTrafficPolicy",
        "metadata": _metadata(names.sibling_gateway(gateway.name), gateway.namespace, gateway.ref),
        "spec": {
            "targetRefs": [_gateway_target(gateway)],
            "headers": {"earlyRequestHeaders": {"remove": removed}},
            "connection": {"bufferLimit": options.buffer_limit_bytes},
            "timeout": {"http": timeouts},
        },
    }


def _gateway_target(gateway: Gateway, at_user_gateway: bool = False) -> dict:
    return {"group": GATEWAY_GROUP, "kind": "Gateway", "name": _served_gateway(gateway, at_user_gateway)}


def override_host_policy(limits: CircuitLimits, options: TranslateOptions, trust_header: bool = True) -> dict:
    """poolgate's pool-cluster load-balancing policy (override_host on the header and envoy.lb metadata, served
    endpoint written back to envoy.lb, least-request fallback), as JSON with proto field names, keys sorted (the
    policy travels in a TypedStruct, whose Struct fields come out of protobuf in no fixed order). Without
    `trust_header` on envoy.lb metadata only, which only the picker writes."""
    policy = json.loads(
        json.dumps(xds.cluster_json(ir.Cluster("pool", "pool", (), limits, override_host=True), options))
    )
    if not trust_header:
        for entry in policy["load_balancing_policy"]["policies"]:
            config = entry["typed_extension_config"]["typed_config"]
            config["override_host_sources"] = [s for s in config["override_host_sources"] if "header" not in s]
    return json.loads(json.dumps(policy["load_balancing_policy"], sort_keys=True))


def _override_host_patch(route_plan: RoutePlan, rule: RulePlan, policy: dict) -> dict:
    return {
        "type": CLUSTER_TYPE,
        "name": names.rule_cluster(*route_plan.key, rule.index),
        "operation": {"op": "add", "path": "/load_balancing_policy", "value": copy.deepcopy(policy)},
    }


def _listeners_of(state: GatewayState, route_plan: RoutePlan) -> list[str]:
    """The names of the Gateway's listeners the route attaches to."""
    return [
        ls.listener.name
        for ls in state.listeners
        if any((a.route.route.namespace, a.route.route.name) == route_plan.key for a in ls.attached)
    ]


def _split_patch(
    gateway: Gateway, listener: str, route_plan: RoutePlan, rule: RulePlan, timeout_s: float, at_user_gateway: bool
) -> dict:
    """The split rule's routes on one sibling listener forward to weighted clusters, each the cluster of a pool's
    share rule and each enabling that pool's picker call (Envoy picks the cluster once per request: the picker's
    header mutation re-matches the route to the same cluster)."""
    clusters = []
    for share in rule.shares:
        cluster: dict = {"name": names.rule_cluster(*route_plan.key, share.rule.index), "weight": share.weight}
        if share.rule.picker is not None and share.rule.pool is not None:
            policy = names.route_policy(route_plan.route.route.name, share.rule.pool.pool.name)
            filter_name = names.ext_proc_filter(route_plan.key[0], policy)
            cluster["typed_per_filter_config"] = {filter_name: {"@type": FILTER_CONFIG_TYPE, "config": {}}}
        clusters.append(cluster)
    action: dict = {"weighted_clusters": {"clusters": clusters}, "timeout": _duration(timeout_s)}
    if rule.retry is not None:
        action["retry_policy"] = {"retry_on": ",".join(rule.retry.retry_on), "num_retries": rule.retry.num_retries}
    own_cluster = names.rule_cluster(*route_plan.key, rule.index)
    return {
        "type": ROUTE_CONFIGURATION_TYPE,
        "name": f"{gateway.namespace}/{_served_gateway(gateway, at_user_gateway)}/{listener}",
        "operation": {
            "op": "replace",
            "jsonPath": f"$.virtual_hosts[*].routes[?(@.route.cluster=='{own_cluster}')]",
            "path": "/route",
            "value": action,
        },
    }


def patch_policy(gateway: Gateway, patches: list[dict], at_user_gateway: bool = False) -> dict:
    """JSON patches on the sibling's xDS: each pool rule's cluster gets poolgate's override_host policy, and each
    rule that splits across pools forwards to its shares' clusters by weight, each with its pool's picker."""
    return {
        "apiVersion": EG_API,
        "kind": "EnvoyPatchPolicy",
        "metadata": _metadata(names.sibling_gateway(gateway.name), gateway.namespace, gateway.ref),
        "spec": {"targetRef": _gateway_target(gateway, at_user_gateway), "type": "JSONPatch", "jsonPatches": patches},
    }


# --- ReferenceGrants ----------------------------------------------------------------------------------------------


def reference_grants(plan: Plan, picker_tls: bool) -> list[dict]:
    """For routes whose pool lives in another namespace (the user's ReferenceGrant allowed HTTPRoute ->
    InferencePool), per pool and route namespace: a grant for the companion routes to the pool's Service, and
    (pickers called without TLS; with TLS a Backend in the route's namespace names the picker) one for the
    EnvoyExtensionPolicies to the pool's picker Service, each naming exactly that Service. Per pool, so that each
    grant is the pool's own (the hooks attach it to the pool)."""
    wanted: dict[tuple[str, str, str, str, str], tuple[str, str]] = {}  # (to ns, pool, from ns, group, kind) ->
    for route_plan in plan.routes:
        namespace = route_plan.route.route.namespace
        for rule in route_plan.rules:
            if not route_plan.parents or rule.pool is None or rule.pool.pool.namespace == namespace:
                continue
            pool, picker = rule.pool.pool, rule.pool.picker
            wanted[(pool.namespace, pool.name, namespace, GATEWAY_GROUP, "HTTPRoute")] = (
                names.pool_service(pool.name),
                pool.ref,
            )
            if picker is not None and not picker_tls:
                key = (picker.service.namespace, pool.name, namespace, EG_GROUP, "EnvoyExtensionPolicy")
                wanted[key] = (picker.service.name, pool.ref)
    return [
        {
            "apiVersion": f"{GATEWAY_GROUP}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": _metadata(dns_label(pool, "poolgate", kind.lower(), from_namespace), to_namespace, source),
            "spec": {
                "from": [{"group": group, "kind": kind, "namespace": from_namespace}],
                "to": [{"group": "", "kind": "Service", "name": service}],
            },
        }
        for (to_namespace, pool, from_namespace, group, kind), (service, source) in sorted(wanted.items())
    ]
