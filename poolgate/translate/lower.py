"""Lower a resolved Graph to the IR: Envoy listeners per Gateway port, virtual hosts per hostname in Gateway API
precedence, routes per rule match, clusters per pool, Service and picker."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import replace
from typing import Literal

from poolgate.api.base import duration_seconds
from poolgate.api.contract import MODEL_NAME_HEADER
from poolgate.api.core import Service
from poolgate.api.gateway import HTTPRoute, PathModifier, RouteFilter, RouteMatch
from poolgate.translate import ir, naming
from poolgate.translate.answers import edge_errors
from poolgate.translate.hostnames import covering_patterns, matches, specificity
from poolgate.translate.options import TranslateOptions
from poolgate.translate.policy import Policy, decide, observes_responses
from poolgate.translate.resolve import (
    Attachment,
    Graph,
    ListenerState,
    Picker,
    PoolTarget,
    ResolvedBackend,
    ResolvedRule,
    ServiceTarget,
)

PATH_ORDER = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


def lower(graph: Graph, options: TranslateOptions, gateways: set[tuple[str, str]] | None = None) -> ir.IR:
    """The IR for this controller's Gateways (all, or those named in `gateways`)."""
    out = ir.IR()
    policy = decide(options)
    for state in graph.gateways:
        gw = state.gateway
        if gateways is not None and (gw.namespace, gw.name) not in gateways:
            continue
        by_port: dict[int, list[ListenerState]] = defaultdict(list)
        for ls in state.listeners:
            if ls.valid:
                by_port[ls.listener.port].append(ls)
        for port, listeners in sorted(by_port.items()):
            vhosts = tuple(_virtual_hosts(listeners, out, options, policy))
            model_routing = any(
                name == MODEL_NAME_HEADER for vh in vhosts for r in vh.routes for _, name, _ in r.match.headers
            )
            uses_picker = any(
                isinstance(r.action, ir.Forward) and any(b.picker for b in r.action.backends)
                for vh in vhosts
                for r in vh.routes
            )
            out.listeners.append(
                ir.Listener(
                    naming.listener_name(gw.namespace, gw.name, port),
                    gw.namespace,
                    gw.name,
                    port,
                    vhosts,
                    policy.client_timeouts,
                    policy.request_limits,
                    edge_errors(model_routing),
                    model_router=policy.model_router if model_routing else None,
                    model_list=_model_list(graph, listeners, options) if model_routing else None,
                    endpoint_picker=policy.picker_filter if uses_picker else None,
                    response_observer=policy.observer_filter if _observes_responses(vhosts) else None,
                )
            )
            if model_routing:
                out.clusters[naming.MODEL_ROUTER_CLUSTER] = ir.Cluster(
                    naming.MODEL_ROUTER_CLUSTER,
                    "model-router",
                    (options.model_router,),
                    policy.circuit_limits,
                    http2=True,
                )
    return out


# How many of a pool's endpoints the model router asks for the pool's models, in turn, before leaving the pool out.
MODEL_SOURCES_PER_POOL = 3


def _model_list(graph: Graph, listeners: list[ListenerState], options: TranslateOptions) -> ir.ModelList:
    """Where the model router finds the models of the pools the listeners' routes forward to, and the names the
    pools' InferenceModelRewrites accept."""
    pools = {
        (b.target.pool.namespace, b.target.pool.name): b.target
        for ls in listeners
        for att in ls.attached
        for rule in att.route.rules
        for b in rule.backends
        if isinstance(b.target, PoolTarget) and b.target.servable
    }
    sources = []
    for (namespace, name), target in sorted(pools.items()):
        port = target.pool.spec.target_ports[0].number
        if options.endpoints == "dns":
            host = f"{naming.pool_endpoints_service(name)}.{namespace}.svc.{options.cluster_domain}"
            addresses: tuple[ir.Address, ...] = (ir.Address(host, port),)
        else:
            ips = sorted({pod.status.pod_ip for pod, _ in target.endpoints if pod.status.pod_ip})
            addresses = tuple(ir.Address(ip, port) for ip in ips[:MODEL_SOURCES_PER_POOL])
        aliases = sorted(
            {
                match.model.value
                for rewrite in graph.snapshot.rewrites.values()
                if (rewrite.namespace, rewrite.spec.pool_ref.name) == (namespace, name)
                for rule in rewrite.spec.rules
                for match in rule.matches
            }
        )
        sources.append(ir.ModelSource(f"{namespace}/{name}", addresses, tuple(aliases)))
    return ir.ModelList(tuple(sources))


# --- virtual hosts ------------------------------------------------------------------------------------------------


def _virtual_hosts(listeners: list[ListenerState], out: ir.IR, options: TranslateOptions, policy: Policy):
    domains = {ls.listener.hostname or "*" for ls in listeners}
    domains |= {h for ls in listeners for att in ls.attached for h in att.hostnames}
    # attachments by (listener, hostname they serve), so each domain looks up only the patterns covering it
    serving: dict[tuple[int, str], list[Attachment]] = defaultdict(list)
    for ls in listeners:
        for att in ls.attached:
            for hostname in att.hostnames:
                serving[(id(ls), hostname)].append(att)
    for domain in sorted(domains, key=lambda d: (specificity(d), d)):
        claiming = min(
            (ls for ls in listeners if matches(ls.listener.hostname or "*", domain)),
            key=lambda ls: specificity(ls.listener.hostname or "*"),
        )
        best: dict[int, tuple[tuple[int, int], Attachment]] = {}
        for pattern in covering_patterns(domain):
            for att in serving.get((id(claiming), pattern), ()):
                rank = specificity(pattern)
                if id(att) not in best or rank < best[id(att)][0]:
                    best[id(att)] = (rank, att)
        routes = _routes(list(best.values()), out, options, policy)
        yield ir.VirtualHost(domain, (domain,), tuple(routes))


def _routes(
    entries: list[tuple[tuple[int, int], Attachment]], out: ir.IR, options: TranslateOptions, policy: Policy
) -> list[ir.Route]:
    keyed = []
    for host_rank, att in entries:
        route = att.route.route
        age = (route.metadata.creation_timestamp or "", route.namespace, route.name)
        for rule in att.route.rules:
            action = _action(rule, route, out, options, policy)
            filters = rule.rule.filters
            for j, match in enumerate(rule.rule.matches):
                key = (
                    host_rank,
                    PATH_ORDER[match.path.type],
                    -len(match.path.value),
                    match.method is None,
                    -len(match.headers),
                    -len(match.query_params),
                    age,
                    rule.index,
                    j,
                )
                name = f"{route.namespace}/{route.name}/rule/{rule.index}/match/{j}"
                keyed.append(
                    (
                        key,
                        ir.Route(
                            name,
                            _match(match),
                            _with_rewrite(action, filters, match),
                            _header_mods(filters, "RequestHeaderModifier"),
                            _header_mods(filters, "ResponseHeaderModifier"),
                        ),
                    )
                )
    keyed.sort(key=lambda kv: kv[0])
    return [route for _, route in keyed]


def _match(match: RouteMatch) -> ir.Match:
    seen: set[str] = set()
    headers = []
    for h in match.headers:  # the first match of a header name wins (Gateway API)
        if h.name.lower() not in seen:
            seen.add(h.name.lower())
            headers.append((h.type, h.name.lower(), h.value))
    return ir.Match(
        match.path.type,
        match.path.value,
        tuple(headers),
        tuple((q.type, q.name, q.value) for q in match.query_params),
        match.method,
    )


def _header_mods(filters: list[RouteFilter], kind: str) -> ir.HeaderMods:
    for f in filters:
        if f.type == kind:
            mod = f.request_header_modifier if kind == "RequestHeaderModifier" else f.response_header_modifier
            assert mod is not None  # RouteFilter's validator requires the modifier of its type
            return ir.HeaderMods(
                tuple((h.name, h.value) for h in mod.set), tuple((h.name, h.value) for h in mod.add), tuple(mod.remove)
            )
    return ir.HeaderMods()


# --- actions ------------------------------------------------------------------------------------------------------


def _action(
    rule: ResolvedRule, route: HTTPRoute, out: ir.IR, options: TranslateOptions, policy: Policy
) -> ir.Forward | ir.Redirect | ir.DirectResponse:
    if rule.unsupported:
        return ir.DirectResponse(500, f"poolgate: this route rule is not served: {rule.unsupported}")
    redirect = next((f.request_redirect for f in rule.rule.filters if f.type == "RequestRedirect"), None)
    if redirect is not None:
        path = _path_modifier(redirect.path) if redirect.path else None
        return ir.Redirect(redirect.scheme, redirect.hostname, redirect.port, path, redirect.status_code)
    backends = tuple(b for b in (_backend(rb, out, options, policy) for rb in rule.backends) if b.weight > 0)
    if not backends:
        return ir.DirectResponse(500, "poolgate: no backend with a weight above 0 for this route rule")
    if len(backends) == 1 and backends[0].cluster is None:
        return ir.DirectResponse(500, invalid_backend_message(rule, route))
    timeouts = rule.rule.timeouts
    return ir.Forward(
        backends,
        duration_seconds(timeouts.request) if timeouts and timeouts.request else policy.route_timeout_s,
        duration_seconds(timeouts.backend_request) if timeouts and timeouts.backend_request else 0.0,
        policy.retries if any(b.picker for b in backends) else None,
    )


def invalid_backend_message(rule: ResolvedRule, route: HTTPRoute) -> str:
    """Why a rule's backend is invalid, naming the object whose status says so."""
    resolved = next(
        b for b in rule.backends if b.target is None or (isinstance(b.target, PoolTarget) and not b.target.servable)
    )
    target = resolved.target
    if isinstance(target, PoolTarget):
        where, why = f"InferencePool {target.pool.namespace}/{target.pool.name}", target.resolved_refs.message
    else:
        where = f"HTTPRoute {route.namespace}/{route.name}"
        why = resolved.problem.message if resolved.problem else "unresolved"
    return f"The backend of this route is invalid: {why} (see the status of {where}, condition ResolvedRefs)."


def _with_rewrite(
    action: ir.Forward | ir.Redirect | ir.DirectResponse, filters: list[RouteFilter], match: RouteMatch
) -> ir.Forward | ir.Redirect | ir.DirectResponse:
    rewrite = next((f.url_rewrite for f in filters if f.type == "URLRewrite"), None)
    if rewrite is None or not isinstance(action, ir.Forward):
        return action
    path = _path_modifier(rewrite.path) if rewrite.path else None
    if path is not None and path[0] == "ReplacePrefixMatch" and match.path.type != "PathPrefix":
        return ir.DirectResponse(500, "poolgate: ReplacePrefixMatch needs a PathPrefix match")
    return replace(action, host_rewrite=rewrite.hostname, path_rewrite=path)


def _path_modifier(path: PathModifier) -> tuple[str, str]:
    """A path modifier as (type, replacement)."""
    value = path.replace_full_path if path.type == "ReplaceFullPath" else path.replace_prefix_match
    assert value is not None  # PathModifier's validator requires the field of its type
    return path.type, value


def _backend(resolved: ResolvedBackend, out: ir.IR, options: TranslateOptions, policy: Policy) -> ir.Backend:
    ref = resolved.ref
    target = resolved.target
    request = _header_mods(ref.filters, "RequestHeaderModifier")
    response = _header_mods(ref.filters, "ResponseHeaderModifier")
    if isinstance(target, PoolTarget) and target.servable:
        cluster = _pool_cluster(target, out, options, policy)
        picker = _picker_call(target, target.picker, out, options, policy) if target.picker else None
        return ir.Backend(cluster, ref.weight, picker, request, response)
    if isinstance(target, ServiceTarget):
        service = target.service
        name = naming.service_cluster(service.namespace, service.name, target.port)
        out.clusters[name] = _service_cluster(name, "service", service, target.port, options, policy)
        return ir.Backend(name, ref.weight, None, request, response)
    return ir.Backend(None, ref.weight)


def _pool_cluster(target: PoolTarget, out: ir.IR, options: TranslateOptions, policy: Policy) -> str:
    pool = target.pool
    name = naming.pool_cluster(pool.namespace, pool.name)
    if name in out.clusters:
        return name
    ports = [p.number for p in pool.spec.target_ports]
    if options.endpoints == "dns":
        host = f"{naming.pool_endpoints_service(pool.name)}.{pool.namespace}.svc.{options.cluster_domain}"
        addresses = tuple(ir.Address(host, port) for port in ports)
    else:
        # endpoints are ready pods, which always have an IP
        addresses = tuple(ir.Address(pod.status.pod_ip, port) for pod, port in target.endpoints if pod.status.pod_ip)
    out.clusters[name] = ir.Cluster(
        name,
        "pool",
        addresses,
        policy.circuit_limits,
        dns=options.endpoints == "dns",
        http2=pool.spec.app_protocol == "kubernetes.io/h2c",
        override_host=target.picker is not None,
    )
    return name


def _picker_call(
    target: PoolTarget, picker: Picker, out: ir.IR, options: TranslateOptions, policy: Policy
) -> ir.PickerCall:
    service = picker.service
    name = naming.picker_cluster(service.namespace, service.name, picker.port)
    cluster = _service_cluster(name, "picker", service, picker.port, options, policy)
    if options.endpoints == "static" and picker.replicas:  # every replica the Service selects (as Endpoints would)
        replicas = tuple(ir.Address(pod.status.pod_ip or "", port) for pod, port in picker.replicas)
        cluster = replace(cluster, addresses=replicas, dns=False)
    out.clusters[name] = replace(
        cluster,
        http2=True,
        tls=options.picker_tls,
        server_name=_service_host(service, options) if options.picker_tls else "",
    )
    pool = target.pool
    edits = picker.maps_model_back or options.picker_edits_responses
    if options.poolgate_pickers:  # `poolgate up` runs every picker, with the replicas it started
        poolgate, replica_count = True, len(picker.replicas)
    elif picker.managed and options.managed_picker_replicas is not None:  # the hooks deploy managed pickers
        poolgate, replica_count = True, options.managed_picker_replicas
    else:  # a picker that may be upstream's
        poolgate, replica_count = False, len(picker.replicas)
    observed = observes_responses(poolgate, edits, replica_count)
    return ir.PickerCall(
        name,
        f"{pool.namespace}/{pool.name}",
        policy.picking(picker.failure_open, observed),
        policy.response_observer if observed else None,
    )


def _observes_responses(vhosts: tuple[ir.VirtualHost, ...]) -> bool:
    return any(
        b.picker is not None and b.picker.observer is not None
        for vh in vhosts
        for r in vh.routes
        if isinstance(r.action, ir.Forward)
        for b in r.action.backends
    )


def _service_cluster(
    name: str,
    role: Literal["service", "picker"],
    service: Service,
    port: int,
    options: TranslateOptions,
    policy: Policy,
) -> ir.Cluster:
    """A cluster that reaches a port of a Service: at its cluster IP, or by its DNS name."""
    address = _service_address(service, port, options)
    return ir.Cluster(name, role, (address,), policy.circuit_limits, dns=_uses_dns(service, options))


def _static_ip(service: Service, options: TranslateOptions) -> str | None:
    """The Service's cluster IP when Envoy uses it as it is; None when Envoy resolves the Service's name."""
    ip = service.spec.cluster_ip
    return ip if options.endpoints != "dns" and ip is not None and _is_ip(ip) else None


def _uses_dns(service: Service, options: TranslateOptions) -> bool:
    return _static_ip(service, options) is None


def _service_address(service: Service, port: int, options: TranslateOptions) -> ir.Address:
    ip = _static_ip(service, options)
    return ir.Address(ip if ip is not None else _service_host(service, options), port)


def _service_host(service: Service, options: TranslateOptions) -> str:
    """The cluster DNS name of a Service."""
    return f"{service.name}.{service.namespace}.svc.{options.cluster_domain}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False
