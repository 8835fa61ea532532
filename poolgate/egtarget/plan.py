"""What Envoy Gateway can serve of a resolved Graph: per route rule, the one pool (or the Services) it forwards to,
and what this target cannot do. Pure: the translator's Graph in, a Plan out; references, pickers and attachments
are the resolver's verdicts, never derived again here, and reliability settings are `policy.decide`'s."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from poolgate.api.base import INFERENCE_GROUP
from poolgate.egtarget import names
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond
from poolgate.translate.options import TranslateOptions
from poolgate.translate.policy import CalloutPolicy, Policy, RetryPolicy, decide
from poolgate.translate.resolve import Graph, ParentResult, PoolTarget, ResolvedRoute, ResolvedRule

# Status entries written by this target carry this controllerName: Envoy Gateway owns its own entries (for the same
# parentRef), and poolgate's own Gateways' entries belong to the hooks; each writer keeps the others' entries.
STATUS_CONTROLLER = "poolgate.dev/envoy-gateway"

Key = tuple[str, str]


@dataclass(frozen=True)
class RulePlan:
    """One rule of a route as the companion route serves it."""

    rule: ResolvedRule
    name: str  # the rule's name in the companion route; policies target it as sectionName
    pool: PoolTarget | None  # the one pool the rule forwards to; None: Services, a redirect, or nothing
    served: bool  # False: the companion rule has no backends, so Envoy Gateway answers 500
    picker: CalloutPolicy | None = None  # the call to the pool's picker, if it has one
    retry: RetryPolicy | None = None  # retries on the picker's fallbacks, if the pool has a picker


@dataclass(frozen=True)
class RoutePlan:
    """A route on Envoy Gateway Gateways that references an InferencePool, and how its companion serves it."""

    route: ResolvedRoute
    parents: tuple[ParentResult, ...]  # the parentRefs accepted on Envoy Gateway's Gateways
    rules: tuple[RulePlan, ...]
    problems: tuple[str, ...]  # rules this target cannot serve, and why

    @property
    def key(self) -> Key:
        return (self.route.route.namespace, self.route.route.name)


@dataclass
class Plan:
    """Everything the Envoy Gateway objects and the status are built from."""

    graph: Graph  # the resolver's graph
    pools: dict[Key, PoolTarget]  # the graph's pools, with this target's refusals applied
    routes: list[RoutePlan]  # routes that reference an InferencePool
    other_routes: list[ResolvedRoute]  # routes on Envoy Gateway's Gateways that reference none
    policy: Policy  # circuit limits, client and route timeouts (per-rule decisions are in the RulePlans)

    def status_graph(self) -> Graph:
        """The graph whose status this target reports: its own controllerName, its refusals in the conditions."""
        snapshot = replace(self.graph.snapshot, controller_name=STATUS_CONTROLLER)
        return Graph(snapshot, self.graph.gateways, [_as_reported(p) for p in self.routes], self.pools)


def plan(graph: Graph, options: TranslateOptions) -> Plan:
    """The plan for every route of the graph (which holds only routes on Envoy Gateway's Gateways)."""
    policy = decide(options)
    referencing = [route for route in graph.routes if _references_pool(route)]
    pools = _refuse_shared_pickers(graph.pools, referencing)
    routes = [_plan_route(route, pools, policy) for route in referencing]
    return Plan(graph, pools, routes, [route for route in graph.routes if not _references_pool(route)], policy)


def _is_pool_ref(ref) -> bool:
    return (ref.group, ref.kind) == (INFERENCE_GROUP, "InferencePool")


def _references_pool(route: ResolvedRoute) -> bool:
    return any(_is_pool_ref(b.ref) for rule in route.rules for b in rule.backends)


def _key(target: PoolTarget) -> Key:
    return (target.pool.namespace, target.pool.name)


def _refuse_shared_pickers(pools: dict[Key, PoolTarget], routes: list[ResolvedRoute]) -> dict[Key, PoolTarget]:
    """Envoy Gateway's ExtProc API cannot send gRPC initial metadata, so a picker cannot learn which pool a request
    is for: pools (used here) that share one picker Service port are refused."""
    used = {
        _key(b.target)
        for route in routes
        for rule in route.rules
        for b in rule.backends
        if isinstance(b.target, PoolTarget)
    }
    by_picker: dict[tuple[str, str, int], list[Key]] = defaultdict(list)
    for key in sorted(used):
        picker = pools[key].picker
        if picker is not None:
            by_picker[(picker.service.namespace, picker.service.name, picker.port)].append(key)
    out = dict(pools)
    for (namespace, name, port), keys in by_picker.items():
        if len(keys) > 1:
            shared = ", ".join(f"{ns}/{pool}" for ns, pool in keys)
            for key in keys:
                out[key] = replace(
                    pools[key],
                    resolved_refs=Cond.false(
                        c.RESOLVED_REFS,
                        c.R_INVALID_EXTENSION_REF,
                        f"endpointPickerRef Service {namespace}/{name} port {port} is shared by InferencePools {shared}; "
                        "Envoy Gateway cannot tell a picker which pool a request is for (its ExtProc API sends no gRPC "
                        "initial metadata), so each pool needs a picker of its own",
                    ),
                )
    return out


def _rule_names(route: ResolvedRoute) -> dict[int, str]:
    """The companion's rule names: the user's, else rule-<index> (unique within the route)."""
    taken = {rule.rule.name for rule in route.rules if rule.rule.name}
    out = {}
    for rule in route.rules:
        name = rule.rule.name or f"rule-{rule.index}"
        if not rule.rule.name and name in taken:
            name = f"poolgate-rule-{rule.index}"
        taken.add(name)
        out[rule.index] = name
    return out


def _plan_route(route: ResolvedRoute, pools: dict[Key, PoolTarget], policy: Policy) -> RoutePlan:
    rule_names = _rule_names(route)
    rules, problems = [], []
    for rule in route.rules:
        live = [b for b in rule.backends if b.ref.weight > 0]
        pool_refs = [b for b in live if _is_pool_ref(b.ref)]
        if rule.unsupported or not pool_refs:  # resolve reports unsupported rules; Services pass through
            rules.append(RulePlan(rule, rule_names[rule.index], None, not rule.unsupported))
            continue
        problem = _rule_problem(route.route.namespace, live, pool_refs)
        if problem:
            problems.append(
                f"rule {rule.index}: {problem}, which the Envoy Gateway target cannot serve "
                "(the rule answers 500 there)"
            )
        resolved = [b.target for b in pool_refs if isinstance(b.target, PoolTarget)]
        target = pools[_key(resolved[0])] if resolved and len(resolved) == len(pool_refs) else None
        served = problem is None and target is not None and target.servable
        pool = target if served else None
        picker = pool.picker if pool is not None else None
        call = policy.picker(picker.failure_open) if picker is not None else None
        retry = policy.retries if picker is not None else None
        rules.append(RulePlan(rule, rule_names[rule.index], pool, served, call, retry))
    parents = tuple(p for p in route.parents if p.accepted.status)
    return RoutePlan(route, parents, tuple(rules), tuple(problems))


def _rule_problem(namespace: str, live: list, pool_refs: list) -> str | None:
    if len(pool_refs) != len(live):
        return "it splits traffic between an InferencePool and other backends"
    if len({(b.ref.namespace or namespace, b.ref.name) for b in pool_refs}) > 1:
        return "it splits traffic between several InferencePools"
    if any(b.ref.filters for b in pool_refs):
        return "an InferencePool backendRef has filters (Envoy Gateway would give it a cluster of its own)"
    return None


def _as_reported(route_plan: RoutePlan) -> ResolvedRoute:
    """The route with where Envoy Gateway serves it in its Accepted conditions and this target's refusals in
    PartiallyInvalid."""
    route = route_plan.route
    namespace, name = route_plan.key
    parents = [
        replace(
            p,
            accepted=replace(
                p.accepted,
                message=(
                    f"Route is accepted; Envoy Gateway serves it as HTTPRoute {namespace}/{names.companion_route(name)} on "
                    f"Gateway {p.gateway.namespace}/{names.sibling_gateway(p.gateway.name)}"
                ),
            ),
        )
        if p.accepted.status
        else p
        for p in route.parents
    ]
    partially_invalid = route.partially_invalid
    if route_plan.problems:
        messages = ([partially_invalid.message] if partially_invalid else []) + list(route_plan.problems)
        partially_invalid = Cond.true(c.PARTIALLY_INVALID, c.R_UNSUPPORTED_VALUE, "; ".join(messages))
    return replace(route, parents=parents, partially_invalid=partially_invalid)
