"""The Kubernetes objects that make Envoy Gateway serve a Plan, one builder per kind (see docs/envoy-gateway.md):

- per Envoy Gateway Gateway with inference routes: a sibling Gateway owned by poolgate (same class, copies of the
  listeners those routes attach to), a ClientTrafficPolicy (strip picker-only headers early, raise the buffer limit)
  and an EnvoyPatchPolicy (override_host with envoy.lb metadata and the served-endpoint report on each pool cluster);
- per route: a companion HTTPRoute on the siblings, InferencePool backendRefs replaced by a Service per pool;
- per route and pool: an EnvoyExtensionPolicy (ext_proc to the pool's picker) and a BackendTrafficPolicy (endpoint
  override from the picker's header, retries on its fallbacks, circuit breakers), both targeting the pool's rules;
- per pool: a Service selecting its pods on its target ports; ReferenceGrants for cross-namespace pools.
The user's objects are never changed."""

from __future__ import annotations

import copy
import json
from collections import defaultdict

from poolgate.api import contract
from poolgate.api.base import GATEWAY_GROUP
from poolgate.api.gateway import Gateway
from poolgate.egtarget import names
from poolgate.egtarget.plan import Plan, RoutePlan, RulePlan
from poolgate.translate import ir, xds
from poolgate.translate.naming import dns_label
from poolgate.translate.options import TranslateOptions
from poolgate.translate.policy import CircuitLimits, ClientTimeouts
from poolgate.translate.resolve import GatewayState, PoolTarget

GATEWAY_API = f"{GATEWAY_GROUP}/v1"
EG_GROUP = "gateway.envoyproxy.io"
EG_API = f"{EG_GROUP}/v1alpha1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "poolgate"}
SOURCE_ANNOTATION = "poolgate.dev/generated-from"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
BODY_MODES = {"BUFFERED": "Buffered", "STREAMED": "Streamed", "FULL_DUPLEX_STREAMED": "FullDuplexStreamed"}
KIND_ORDER = (
    "Service",
    "ReferenceGrant",
    "Gateway",
    "HTTPRoute",
    "ClientTrafficPolicy",
    "BackendTrafficPolicy",
    "EnvoyExtensionPolicy",
    "EnvoyPatchPolicy",
)


def build_objects(plan: Plan, options: TranslateOptions, gateway_class: str | None = None) -> list[dict]:
    """Every object of the plan, in a deterministic order (by kind, then namespace and name)."""
    out = []
    serving: dict[tuple[str, str], dict[tuple[str, str], RoutePlan]] = defaultdict(dict)  # Gateway -> its routes
    for route_plan in plan.routes:
        if not route_plan.parents:
            continue
        out.append(companion_route(route_plan, plan.policy.route_timeout_s))
        for result in route_plan.parents:
            serving[(result.gateway.namespace, result.gateway.name)][route_plan.key] = route_plan
        for target, rules in _rules_by_pool(route_plan):
            out.append(backend_traffic_policy(route_plan, target, rules, plan.policy.circuit_limits, options))
            if rules[0].picker is not None:
                out.append(extension_policy(route_plan, target, rules, plan.policy.circuit_limits))
    gateways = {(state.gateway.namespace, state.gateway.name): state for state in plan.graph.gateways}
    policy = override_host_policy(plan.policy.circuit_limits, options)
    for key, route_plans in sorted(serving.items()):
        state = gateways[key]
        out.append(sibling_gateway(state, set(route_plans), gateway_class))
        out.append(client_traffic_policy(state.gateway, plan.policy.client_timeouts, options))
        patches = [
            _override_host_patch(rp, rule, policy)
            for rp in route_plans.values()
            for rule in rp.rules
            if rule.picker is not None
        ]
        if patches:
            out.append(patch_policy(state.gateway, patches))
    served_pools = {
        (r.pool.pool.namespace, r.pool.pool.name): r.pool
        for rp in plan.routes
        if rp.parents
        for r in rp.rules
        if r.pool is not None
    }
    out += [pool_service(target) for _, target in sorted(served_pools.items())]
    out += reference_grants(plan)
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


def companion_route(route_plan: RoutePlan, route_timeout_s: float) -> dict:
    """The user's route on the sibling Gateways: same hostnames, matches and filters; each pool rule forwards to the
    pool's Service on every target port, with `route_timeout_s` unless the rule sets its own request timeout; rules
    this target cannot serve keep only their matches (500)."""
    route = route_plan.route.route
    parents = []
    for result in route_plan.parents:
        ref = result.parent_ref.to_json()
        ref.update(name=names.sibling_gateway(result.gateway.name), namespace=result.gateway.namespace)
        if ref not in parents:
            parents.append(ref)
    spec = {
        "parentRefs": parents,
        "hostnames": list(route.spec.hostnames),
        "rules": [_companion_rule(route.namespace, rule, route_timeout_s) for rule in route_plan.rules],
    }
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _metadata(names.companion_route(route.name), route.namespace, route.ref),
        "spec": _pruned(spec),
    }


def _companion_rule(route_namespace: str, plan: RulePlan, route_timeout_s: float) -> dict:
    rule = plan.rule.rule.to_json()
    out = {"name": plan.name, "matches": rule["matches"]}
    if not plan.served:
        return out
    out["filters"] = rule.get("filters", [])
    if plan.pool is None:  # Services (or a redirect): as the user wrote them; weight-0 pool refs dropped
        out["backendRefs"] = [
            b.ref.to_json() for b in plan.rule.backends if (b.ref.group, b.ref.kind) == ("", "Service")
        ]
    else:
        pool = plan.pool.pool
        namespace = {"namespace": pool.namespace} if pool.namespace != route_namespace else {}
        out["backendRefs"] = [
            {
                "group": "",
                "kind": "Service",
                "name": names.pool_service(pool.name),
                **namespace,
                "port": port.number,
                "weight": 1,
            }
            for port in pool.spec.target_ports
        ]
    timeouts = dict(rule.get("timeouts", {}))
    if plan.pool is not None:
        timeouts.setdefault("request", _duration(route_timeout_s))  # as poolgate's own Envoy
    out["timeouts"] = timeouts
    return out


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


def _policy_metadata(route_plan: RoutePlan, target: PoolTarget) -> dict:
    route, pool = route_plan.route.route, target.pool
    return _metadata(dns_label(route.name, "poolgate", pool.name), route.namespace, f"{route.ref}, {pool.ref}")


def extension_policy(route_plan: RoutePlan, target: PoolTarget, rules: list[RulePlan], limits: CircuitLimits) -> dict:
    """ext_proc to the pool's picker on the pool's rules, called as the rules' picker policy says (Envoy Gateway
    refuses failOpen with full-duplex bodies, which the policy never asks for), its backend lifted to `limits`."""
    picker, call = target.picker, rules[0].picker
    assert picker is not None and call is not None  # built for pools with a picker only
    backend: dict[str, str | int] = {"name": picker.service.name, "port": picker.port}
    if picker.service.namespace != route_plan.route.route.namespace:
        backend["namespace"] = picker.service.namespace
    ext_proc = {
        "backendRefs": [backend],
        # a gRPC stream per request in flight, for as long as it runs
        "backendSettings": {
            "circuitBreaker": {
                "maxParallelRequests": limits.max_requests,
                "maxPendingRequests": limits.max_pending_requests,
            }
        },
        "processingMode": {
            "request": {"body": BODY_MODES[call.request_body]},
            "response": {"body": BODY_MODES[call.response_body]},
        },
        "failOpen": call.failure_mode_allow,
        "messageTimeout": _duration(call.timeout_s),
        "metadata": {
            "accessibleNamespaces": [contract.LB_METADATA_NAMESPACE, contract.SUBSET_HINT_NAMESPACE],
            "writableNamespaces": [contract.LB_METADATA_NAMESPACE],
        },
    }
    return {
        "apiVersion": EG_API,
        "kind": "EnvoyExtensionPolicy",
        "metadata": _policy_metadata(route_plan, target),
        "spec": {"targetRefs": _rule_targets(route_plan, rules), "extProc": [ext_proc]},
    }


def backend_traffic_policy(
    route_plan: RoutePlan, target: PoolTarget, rules: list[RulePlan], limits: CircuitLimits, options: TranslateOptions
) -> dict:
    """The pool cluster's settings: least-request balancing that honours the picker's header (Envoy Gateway's own
    endpoint override, so picks hold even where EnvoyPatchPolicy is disabled), retries that walk the picker's
    fallbacks as the rules' retry policy says, the circuit-breaker `limits` and poolgate's buffer limit. Setting cluster fields at rule level also keeps
    the rule's own cluster name when Envoy Gateway merges backend clusters."""
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
    }
    retry = rules[0].retry
    if retry is not None:
        spec["loadBalancer"]["endpointOverride"] = {"extractFrom": [{"header": contract.DESTINATION_HEADER}]}
        spec["retry"] = {"numRetries": retry.num_retries, "retryOn": {"triggers": list(retry.retry_on)}}
    return {
        "apiVersion": EG_API,
        "kind": "BackendTrafficPolicy",
        "metadata": _policy_metadata(route_plan, target),
        "spec": spec,
    }


def client_traffic_policy(gateway: Gateway, client_timeouts: ClientTimeouts, options: TranslateOptions) -> dict:
    """On the sibling: strip the headers only the picker may set before any filter runs, raise the buffer limit,
    and the client timeouts poolgate's own Envoy has (slow clients cut off, long silent requests allowed)."""
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
            "headers": {"earlyRequestHeaders": {"remove": list(contract.GATEWAY_ONLY_HEADERS)}},
            "connection": {"bufferLimit": options.buffer_limit_bytes},
            "timeout": {"http": timeouts},
        },
    }


def _gateway_target(gateway: Gateway) -> dict:
    return {"group": GATEWAY_GROUP, "kind": "Gateway", "name": names.sibling_gateway(gateway.name)}


def override_host_policy(limits: CircuitLimits, options: TranslateOptions) -> dict:
    """poolgate's pool-cluster load-balancing policy (override_host on the header and envoy.lb metadata, served
    endpoint written back to envoy.lb, least-request fallback), as JSON with proto field names, keys sorted (the
    policy travels in a TypedStruct, whose Struct fields come out of protobuf in no fixed order)."""
    policy = xds.cluster_json(ir.Cluster("pool", "pool", (), limits, override_host=True), options)
    return json.loads(json.dumps(policy["load_balancing_policy"], sort_keys=True))


def _override_host_patch(route_plan: RoutePlan, rule: RulePlan, policy: dict) -> dict:
    return {
        "type": CLUSTER_TYPE,
        "name": names.rule_cluster(*route_plan.key, rule.rule.index),
        "operation": {"op": "add", "path": "/load_balancing_policy", "value": copy.deepcopy(policy)},
    }


def patch_policy(gateway: Gateway, patches: list[dict]) -> dict:
    """JSON patches on the sibling's xDS: each pool rule's cluster gets poolgate's override_host policy."""
    return {
        "apiVersion": EG_API,
        "kind": "EnvoyPatchPolicy",
        "metadata": _metadata(names.sibling_gateway(gateway.name), gateway.namespace, gateway.ref),
        "spec": {"targetRef": _gateway_target(gateway), "type": "JSONPatch", "jsonPatches": patches},
    }


# --- ReferenceGrants ----------------------------------------------------------------------------------------------


def reference_grants(plan: Plan) -> list[dict]:
    """For routes whose pool lives in another namespace (the user's ReferenceGrant allowed HTTPRoute ->
    InferencePool): a grant for the companion routes to the pool's Service, and one for the EnvoyExtensionPolicies
    to the pool's picker Service, each naming exactly those Services."""
    wanted: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)  # (to ns, from ns, group, kind) -> names
    for route_plan in plan.routes:
        namespace = route_plan.route.route.namespace
        for rule in route_plan.rules:
            if not route_plan.parents or rule.pool is None or rule.pool.pool.namespace == namespace:
                continue
            pool, picker = rule.pool.pool, rule.pool.picker
            wanted[(pool.namespace, namespace, GATEWAY_GROUP, "HTTPRoute")].add(names.pool_service(pool.name))
            if picker is not None:
                wanted[(picker.service.namespace, namespace, EG_GROUP, "EnvoyExtensionPolicy")].add(picker.service.name)
    return [
        {
            "apiVersion": f"{GATEWAY_GROUP}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": _metadata(
                dns_label("poolgate", kind.lower(), from_namespace),
                to_namespace,
                f"InferencePool references from namespace {from_namespace}",
            ),
            "spec": {
                "from": [{"group": group, "kind": kind, "namespace": from_namespace}],
                "to": [{"group": "", "kind": "Service", "name": name} for name in sorted(names)],
            },
        }
        for (to_namespace, from_namespace, group, kind), names in sorted(wanted.items())
    ]
