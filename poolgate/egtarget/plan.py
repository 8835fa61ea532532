"""What Envoy Gateway can serve of a resolved Graph: per route rule, the one pool (or the Services) it forwards to,
and what this target cannot do. Pure: the translator's Graph in, a Plan out; references, pickers and attachments
are the resolver's verdicts, never derived again here, and reliability settings are `policy.decide`'s."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from poolgate.api.base import INFERENCE_GROUP
from poolgate.api.contract import MODEL_ROUTER_ONLY_HEADERS
from poolgate.egtarget import names
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond
from poolgate.translate.naming import dns_label
from poolgate.translate.options import TranslateOptions
from poolgate.translate.policy import CalloutPolicy, Policy, RetryPolicy, decide
from poolgate.translate.resolve import Graph, ParentResult, PoolTarget, ResolvedBackend, ResolvedRoute, ResolvedRule

# Status entries written by this target carry this controllerName: Envoy Gateway owns its own entries (for the same
# parentRef), and poolgate's own Gateways' entries belong to the hooks; each writer keeps the others' entries.
STATUS_CONTROLLER = "poolgate.dev/envoy-gateway"

Key = tuple[str, str]


@dataclass(frozen=True)
class RulePlan:
    """One rule of a route as the companion route serves it."""

    rule: ResolvedRule
    name: str  # the rule's name in the companion route; policies target it as sectionName
    index: int  # its index in the companion route: Envoy Gateway names the rule's cluster and routes after it
    pool: PoolTarget | None  # the one pool the rule forwards to; None: Services, a redirect, a split, or nothing
    served: bool  # False: the companion rule has no backends, so Envoy Gateway answers 500
    picker: CalloutPolicy | None = None  # the call to the pool's picker, if it has one
    retry: RetryPolicy | None = None  # retries on the picker's fallbacks (of the pool, or of every share of a split)
    shares: tuple[Share, ...] = ()  # a split across pools (and Services): each one's weighted share
    service: ResolvedBackend | None = None  # set on a Service's share of a split: that Service backendRef
    model_routed: bool = False  # its matches name the model the model router sets (X-Gateway-Model-Name)
    share_of: str | None = None  # set on a share's rule: the name of the split rule it serves a share of


@dataclass(frozen=True)
class Share:
    """One pool's (or Service's) share of a rule that splits traffic across pools. It is served by a rule of its own
    in the companion route, which clients cannot match: Envoy Gateway gives that rule its own cluster and, for a
    pool, the pool's own picker call (and failure mode); the split rule's route is patched to weighted clusters over
    these rules."""

    weight: int
    rule: RulePlan


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

    def status_graph(self, at_user_gateway: bool = False) -> Graph:
        """The graph whose status this target reports: its own controllerName, its refusals in the conditions, and
        the Gateway that serves the companions (the siblings, or the user's own `at_user_gateway`)."""
        snapshot = replace(self.graph.snapshot, controller_name=STATUS_CONTROLLER)
        routes = [_as_reported(p, at_user_gateway) for p in self.routes]
        return Graph(snapshot, self.graph.gateways, routes, self.pools)


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
    rules: list[RulePlan] = []
    share_rules: list[RulePlan] = []
    problems: list[str] = []
    for rule in route.rules:
        name = rule_names[rule.index]
        live = [b for b in rule.backends if b.ref.weight > 0]
        pool_refs = [b for b in live if _is_pool_ref(b.ref)]
        if rule.unsupported or not pool_refs:  # resolve reports unsupported rules; Services pass through
            rules.append(RulePlan(rule, name, rule.index, None, not rule.unsupported))
            continue
        problem = _rule_problem(live, pool_refs)
        resolved = [b.target for b in pool_refs if isinstance(b.target, PoolTarget)]
        targets = [pools[_key(t)] for t in resolved] if len(resolved) == len(pool_refs) else []
        if problem:
            problems.append(
                f"rule {rule.index}: {problem}, which the Envoy Gateway target cannot serve "
                "(the rule answers 500 there)"
            )
        if problem or not targets or not all(t.servable for t in targets):  # the pools' status says why
            rules.append(RulePlan(rule, name, rule.index, None, False))
            continue
        weights: dict[Key, int] = defaultdict(int)  # several refs to one pool add up
        for backend, target in zip(pool_refs, targets, strict=True):
            weights[_key(target)] += backend.ref.weight
        if len(weights) == 1 and len(live) == len(pool_refs):
            rules.append(_pool_rule(rule, name, rule.index, targets[0], policy))
            continue
        shares = []
        for key, weight in sorted(weights.items()):
            index = len(route.rules) + len(share_rules)
            share = _pool_rule(rule, dns_label(name, pools[key].pool.name), index, pools[key], policy, share_of=name)
            share_rules.append(share)
            shares.append(Share(weight, share))
        for backend in (b for b in live if not _is_pool_ref(b.ref)):  # Services: a share each, no picker
            index = len(route.rules) + len(share_rules)
            share_name = dns_label(name, "service", backend.ref.name)
            share = RulePlan(rule, share_name, index, None, True, service=backend, share_of=name)
            share_rules.append(share)
            shares.append(Share(backend.ref.weight, share))
        rules.append(RulePlan(rule, name, rule.index, None, True, retry=policy.retries, shares=tuple(shares)))
    parents = tuple(p for p in route.parents if p.accepted.status)
    return RoutePlan(route, parents, tuple(rules + share_rules), tuple(problems))


def _pool_rule(
    rule: ResolvedRule, name: str, index: int, pool: PoolTarget, policy: Policy, share_of: str | None = None
) -> RulePlan:
    call = policy.picker(pool.picker.failure_open) if pool.picker is not None else None
    retry = policy.retries if pool.picker is not None else None
    routed = share_of is None and any(
        h.name.lower() in MODEL_ROUTER_ONLY_HEADERS for m in rule.rule.matches for h in m.headers
    )
    return RulePlan(rule, name, index, pool, True, call, retry, share_of=share_of, model_routed=routed)


def _rule_problem(live: list, pool_refs: list) -> str | None:
    if any((b.ref.group, b.ref.kind) != ("", "Service") for b in live if not _is_pool_ref(b.ref)):
        return "it splits traffic between an InferencePool and backends other than Services"
    if any(b.ref.filters for b in pool_refs):
        return "an InferencePool backendRef has filters (Envoy Gateway would give it a cluster of its own)"
    return None


def _as_reported(route_plan: RoutePlan, at_user_gateway: bool) -> ResolvedRoute:
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
                    f"Gateway {p.gateway.namespace}/"
                    f"{p.gateway.name if at_user_gateway else names.sibling_gateway(p.gateway.name)}"
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
