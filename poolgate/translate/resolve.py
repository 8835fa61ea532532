"""Resolve a Snapshot into a graph: which routes attach to which listeners of this controller's Gateways, what each
backendRef points at, and what is wrong where. Pure: objects in, graph out; status and lowering both read the graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from poolgate.api import Gateway, HTTPRoute, InferencePool, Pod, Service, contract
from poolgate.api.base import GATEWAY_GROUP, INFERENCE_GROUP
from poolgate.api.gateway import BackendRef, Listener, ParentReference, RouteRule
from poolgate.api.inference import EndpointPickerRef, Port
from poolgate.api.snapshot import Snapshot
from poolgate.translate import conditions as c
from poolgate.translate import naming
from poolgate.translate.conditions import Cond
from poolgate.translate.hostnames import effective_hostnames

SUPPORTED_PROTOCOLS = ("HTTP",)
SUPPORTED_ROUTE_KINDS = ((GATEWAY_GROUP, "HTTPRoute"),)
SUPPORTED_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")
SUPPORTED_BACKEND_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")


@dataclass
class ListenerState:
    """One listener of one of our Gateways, its conditions and the routes attached to it."""

    gateway: Gateway
    listener: Listener
    conditions: list[Cond] = field(default_factory=list)
    attached: list[Attachment] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return all(cond.status for cond in self.conditions if cond.type == c.ACCEPTED)


@dataclass
class GatewayState:
    gateway: Gateway
    listeners: list[ListenerState]


@dataclass
class Attachment:
    """A route attached to a listener, serving these hostnames there ("*" = any)."""

    route: ResolvedRoute
    listener: ListenerState
    hostnames: list[str]


@dataclass
class ParentResult:
    """The outcome of one route parentRef that names one of our Gateways."""

    parent_ref: ParentReference
    gateway: Gateway
    accepted: Cond


@dataclass
class Picker:
    """A pool's endpoint picker, resolved to its Service and port, and the ready pods (replicas) the Service
    selects, each with the port it serves on."""

    service: Service
    port: int
    failure_open: bool
    maps_model_back: bool = False  # an InferenceModelRewrite names the pool: the picker edits its responses' bodies
    replicas: list[tuple[Pod, int]] = field(default_factory=list)
    managed: bool = False  # poolgate deploys it (annotation poolgate.dev/managed-picker: "true"): a poolgate picker


@dataclass
class PoolTarget:
    """An InferencePool backend: its endpoints, its picker (None: Envoy balances alone), and what is wrong with it."""

    pool: InferencePool
    endpoints: list[tuple[Pod, int]]
    picker: Picker | None
    accepted: Cond
    resolved_refs: Cond

    @property
    def servable(self) -> bool:
        return self.resolved_refs.status


@dataclass
class ServiceTarget:
    service: Service
    port: int


@dataclass
class ResolvedBackend:
    """One backendRef: its weight, what it resolved to (None when it did not), and why not."""

    ref: BackendRef
    target: PoolTarget | ServiceTarget | None
    problem: Cond | None = None


@dataclass
class ResolvedRule:
    index: int
    rule: RouteRule
    backends: list[ResolvedBackend]
    unsupported: str | None = None  # why the rule cannot be served (it then answers 500)


@dataclass
class ResolvedRoute:
    route: HTTPRoute
    rules: list[ResolvedRule]
    parents: list[ParentResult] = field(default_factory=list)
    resolved_refs: Cond | None = None
    partially_invalid: Cond | None = None


@dataclass
class Graph:
    """Everything the status computation and the lowering to Envoy need, derived once from a Snapshot."""

    snapshot: Snapshot
    gateways: list[GatewayState]
    routes: list[ResolvedRoute]
    pools: dict[tuple[str, str], PoolTarget]


def resolve(snap: Snapshot, protocols: tuple[str, ...] = SUPPORTED_PROTOCOLS) -> Graph:
    """Resolve every object in the snapshot that concerns this controller's Gateways; `protocols` are the listener
    protocols the data plane serves (poolgate's Envoy: HTTP; Envoy Gateway also terminates HTTPS)."""
    pools = {key: _resolve_pool(snap, pool) for key, pool in sorted(snap.pools.items())}
    gateways = [GatewayState(gw, _listener_states(gw, protocols)) for gw in snap.our_gateways()]
    by_key = {(g.gateway.namespace, g.gateway.name): g for g in gateways}
    routes = []
    for _, route in sorted(snap.routes.items()):
        resolved = ResolvedRoute(
            route, [_resolve_rule(snap, pools, route, i, rule) for i, rule in enumerate(route.spec.rules)]
        )
        for parent_ref in route.spec.parent_refs:
            if parent_ref.group != GATEWAY_GROUP or parent_ref.kind != "Gateway":
                continue
            state = by_key.get((parent_ref.namespace or route.namespace, parent_ref.name))
            if state is not None:
                resolved.parents.append(_attach(snap, resolved, parent_ref, state))
        if resolved.parents:
            resolved.resolved_refs = _route_resolved_refs(resolved)
            resolved.partially_invalid = _partially_invalid(resolved)
            routes.append(resolved)
    return Graph(snap, gateways, routes, pools)


# --- listeners ----------------------------------------------------------------------------------------------------


def _listener_states(gateway: Gateway, protocols: tuple[str, ...]) -> list[ListenerState]:
    protocols_by_port: dict[int, set[str]] = {}
    for listener in gateway.spec.listeners:
        protocols_by_port.setdefault(listener.port, set()).add(listener.protocol)
    states = []
    for listener in gateway.spec.listeners:
        conds = []
        if listener.protocol not in protocols:
            conds.append(
                Cond.false(
                    c.ACCEPTED,
                    c.R_UNSUPPORTED_PROTOCOL,
                    f"protocol {listener.protocol} is not supported; poolgate serves "
                    f"{' and '.join(protocols)} listeners",
                )
            )
        elif len(protocols_by_port[listener.port]) > 1:
            conds.append(
                Cond.false(
                    c.ACCEPTED,
                    c.R_PROTOCOL_CONFLICT,
                    f"port {listener.port} is used by listeners of different protocols",
                )
            )
        else:
            conds.append(Cond.true(c.ACCEPTED, c.R_ACCEPTED, "Listener is accepted"))
        conflicted = len(protocols_by_port[listener.port]) > 1
        conds.append(
            Cond(
                c.CONFLICTED,
                conflicted,
                c.R_PROTOCOL_CONFLICT if conflicted else c.R_NO_CONFLICTS,
                "protocol conflict on this port" if conflicted else "No conflicts",
            )
        )
        bad_kinds = [k.kind for k in listener.allowed_routes.kinds if (k.group, k.kind) not in SUPPORTED_ROUTE_KINDS]
        if bad_kinds:
            conds.append(
                Cond.false(
                    c.RESOLVED_REFS,
                    c.R_INVALID_ROUTE_KINDS,
                    f"unsupported route kinds: {', '.join(bad_kinds)}; poolgate supports HTTPRoute",
                )
            )
        else:
            conds.append(Cond.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "All references are resolved"))
        states.append(ListenerState(gateway, listener, conds))
    return states


def _allows_kind(listener: Listener) -> bool:
    kinds = listener.allowed_routes.kinds
    return not kinds or any((k.group, k.kind) == (GATEWAY_GROUP, "HTTPRoute") for k in kinds)


def _allows_namespace(snap: Snapshot, state: ListenerState, namespace: str) -> bool:
    rule = state.listener.allowed_routes.namespaces
    if rule.from_ == "All":
        return True
    if rule.from_ == "Same":
        return namespace == state.gateway.namespace
    return rule.selector is not None and rule.selector.matches(snap.namespace_labels(namespace))


# --- route attachment ---------------------------------------------------------------------------------------------


def _attach(snap: Snapshot, route: ResolvedRoute, parent_ref: ParentReference, state: GatewayState) -> ParentResult:
    candidates = [
        ls
        for ls in state.listeners
        if (parent_ref.section_name is None or ls.listener.name == parent_ref.section_name)
        and (parent_ref.port is None or ls.listener.port == parent_ref.port)
    ]
    gateway = state.gateway
    if not candidates:
        return ParentResult(
            parent_ref,
            gateway,
            Cond.false(
                c.ACCEPTED,
                c.R_NO_MATCHING_PARENT,
                "no listener of the Gateway matches the parentRef's sectionName/port",
            ),
        )
    allowed = [
        ls
        for ls in candidates
        if ls.valid and _allows_kind(ls.listener) and _allows_namespace(snap, ls, route.route.namespace)
    ]
    if not allowed:
        return ParentResult(
            parent_ref,
            gateway,
            Cond.false(
                c.ACCEPTED,
                c.R_NOT_ALLOWED_BY_LISTENERS,
                "no listener of the Gateway allows this route (namespace, kind or an invalid listener)",
            ),
        )
    attached = 0
    for ls in allowed:
        hostnames = effective_hostnames(ls.listener.hostname, route.route.spec.hostnames)
        if hostnames:
            ls.attached.append(Attachment(route, ls, hostnames))
            attached += 1
    if not attached:
        return ParentResult(
            parent_ref,
            gateway,
            Cond.false(
                c.ACCEPTED, c.R_NO_MATCHING_LISTENER_HOSTNAME, "no hostname of the route intersects a listener hostname"
            ),
        )
    return ParentResult(parent_ref, gateway, Cond.true(c.ACCEPTED, c.R_ACCEPTED, "Route is accepted"))


# --- backends -----------------------------------------------------------------------------------------------------


def _resolve_rule(snap: Snapshot, pools: dict, route: HTTPRoute, index: int, rule: RouteRule) -> ResolvedRule:
    unsupported = [f.type for f in rule.filters if f.type not in SUPPORTED_FILTERS]
    backends = [_resolve_backend(snap, pools, route, ref) for ref in rule.backend_refs]
    for backend in backends:
        unsupported += [f.type for f in backend.ref.filters if f.type not in SUPPORTED_BACKEND_FILTERS]
    reason = f"filter type {', '.join(sorted(set(unsupported)))} is not supported" if unsupported else None
    return ResolvedRule(index, rule, backends, reason)


def _resolve_backend(snap: Snapshot, pools: dict, route: HTTPRoute, ref: BackendRef) -> ResolvedBackend:
    namespace = ref.namespace or route.namespace
    where = f"{ref.kind} {namespace}/{ref.name}"
    if (ref.group, ref.kind) == (INFERENCE_GROUP, "InferencePool"):
        if not snap.grant_permits("HTTPRoute", route.namespace, INFERENCE_GROUP, "InferencePool", namespace, ref.name):
            return ResolvedBackend(
                ref,
                None,
                Cond.false(
                    c.RESOLVED_REFS,
                    c.R_REF_NOT_PERMITTED,
                    f"{where} is in another namespace and no ReferenceGrant allows the reference",
                ),
            )
        target = pools.get((namespace, ref.name))
        if target is None:
            return ResolvedBackend(ref, None, Cond.false(c.RESOLVED_REFS, c.R_BACKEND_NOT_FOUND, f"{where} not found"))
        return ResolvedBackend(ref, target)
    if (ref.group, ref.kind) == ("", "Service"):
        if not snap.grant_permits("HTTPRoute", route.namespace, "", "Service", namespace, ref.name):
            return ResolvedBackend(
                ref,
                None,
                Cond.false(
                    c.RESOLVED_REFS,
                    c.R_REF_NOT_PERMITTED,
                    f"{where} is in another namespace and no ReferenceGrant allows the reference",
                ),
            )
        service = snap.services.get((namespace, ref.name))
        port = ref.port
        if service is None or service.spec.type == "ExternalName" or port is None or service.port(port) is None:
            detail = (
                "not found"
                if service is None
                else (
                    "is an ExternalName Service (not supported)"
                    if service.spec.type == "ExternalName"
                    else f"has no port {ref.port}"
                )
            )
            return ResolvedBackend(ref, None, Cond.false(c.RESOLVED_REFS, c.R_BACKEND_NOT_FOUND, f"{where} {detail}"))
        return ResolvedBackend(ref, ServiceTarget(service, port))
    return ResolvedBackend(
        ref,
        None,
        Cond.false(
            c.RESOLVED_REFS,
            c.R_INVALID_KIND,
            f"backendRef kind {ref.kind} in group {ref.group or 'core'} is not supported; "
            "use a Service or an inference.networking.k8s.io InferencePool",
        ),
    )


def _resolve_pool(snap: Snapshot, pool: InferencePool) -> PoolTarget:
    ref = effective_picker_ref(pool)
    endpoints = snap.pool_endpoints(pool)
    accepted = Cond.true(c.ACCEPTED, c.R_ACCEPTED, "InferencePool is accepted")
    if ref is None:
        accepted = Cond.true(
            c.ACCEPTED,
            c.R_ACCEPTED,
            "no endpointPickerRef: Envoy balances requests across the pool's endpoints itself (least request)",
        )
        return PoolTarget(
            pool,
            endpoints,
            None,
            accepted,
            Cond.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "no endpoint picker to resolve"),
        )
    if (ref.group, ref.kind) != ("", "Service"):
        return PoolTarget(
            pool,
            endpoints,
            None,
            accepted,
            Cond.false(
                c.RESOLVED_REFS,
                c.R_INVALID_EXTENSION_REF,
                f"endpointPickerRef kind {ref.kind} in group {ref.group or 'core'} is not supported; use a Service",
            ),
        )
    service = snap.services.get((pool.namespace, ref.name)) or _managed_picker_service(pool, ref)
    if service is None:
        return PoolTarget(
            pool,
            endpoints,
            None,
            accepted,
            Cond.false(
                c.RESOLVED_REFS,
                c.R_INVALID_EXTENSION_REF,
                f"endpointPickerRef Service {pool.namespace}/{ref.name} not found",
            ),
        )
    if service.spec.type == "ExternalName":
        return PoolTarget(
            pool,
            endpoints,
            None,
            accepted,
            Cond.false(
                c.RESOLVED_REFS,
                c.R_INVALID_EXTENSION_REF,
                f"endpointPickerRef Service {pool.namespace}/{ref.name} is an ExternalName Service",
            ),
        )
    port = ref.port.number if ref.port is not None else None  # the model requires a port for Service refs
    if port is None or service.port(port) is None:
        return PoolTarget(
            pool,
            endpoints,
            None,
            accepted,
            Cond.false(
                c.RESOLVED_REFS,
                c.R_INVALID_EXTENSION_REF,
                f"endpointPickerRef Service {pool.namespace}/{ref.name} has no port {port}",
            ),
        )
    rewritten = any((r.namespace, r.spec.pool_ref.name) == (pool.namespace, pool.name) for r in snap.rewrites.values())
    replicas = snap.service_endpoints(service, port)
    picker = Picker(service, port, ref.failure_mode == "FailOpen", rewritten, replicas, managed=is_managed(pool))
    return PoolTarget(
        pool,
        endpoints,
        picker,
        accepted,
        Cond.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "endpointPickerRef is resolved"),
    )


def is_managed(pool: InferencePool) -> bool:
    """Whether poolgate deploys the pool's picker (annotation poolgate.dev/managed-picker: "true")."""
    return pool.metadata.annotations.get(contract.MANAGED_PICKER_ANNOTATION, "").lower() == "true"


def _managed_picker_service(pool: InferencePool, ref: EndpointPickerRef) -> Service | None:
    """The Service poolgate deploys for a managed pool's picker (whatever its endpointPickerRef names it), as it will
    exist: None for a pool whose picker poolgate does not manage."""
    if not is_managed(pool) or ref.port is None:
        return None
    return Service.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": ref.name, "namespace": pool.namespace},
            "spec": {"ports": [{"port": ref.port.number}]},
        }
    )


def effective_picker_ref(pool: InferencePool) -> EndpointPickerRef | None:
    """The pool's endpointPickerRef; for a pool that asks poolgate to manage its picker (annotation
    poolgate.dev/managed-picker: "true") and names none, the Service poolgate deploys for it."""
    ref = pool.spec.endpoint_picker_ref
    annotations = pool.metadata.annotations
    if ref is not None or not is_managed(pool):
        return ref
    failure_mode: Literal["FailOpen", "FailClose"] = (
        "FailOpen" if annotations.get(contract.FAILURE_MODE_ANNOTATION) == "FailOpen" else "FailClose"
    )
    return EndpointPickerRef(
        name=naming.managed_picker(pool.name), port=Port(number=naming.MANAGED_PICKER_PORT), failure_mode=failure_mode
    )


def _route_resolved_refs(route: ResolvedRoute) -> Cond:
    problems = [b.problem for rule in route.rules for b in rule.backends if b.problem is not None]
    if not problems:
        return Cond.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "All references are resolved")
    return Cond.false(c.RESOLVED_REFS, problems[0].reason, "; ".join(dict.fromkeys(p.message for p in problems)))


def _partially_invalid(route: ResolvedRoute) -> Cond | None:
    bad = [f"rule {rule.index}: {rule.unsupported}" for rule in route.rules if rule.unsupported]
    if not bad:
        return None
    return Cond.true(c.PARTIALLY_INVALID, c.R_UNSUPPORTED_VALUE, "; ".join(bad) + " (those rules answer 500)")
