"""Status of GatewayClasses, Gateways, HTTPRoutes and InferencePools, computed from a resolved Graph.

Pure: the graph, the time to stamp on changed conditions and what the runtime knows (addresses, whether the data
plane is programmed) in; status objects out. Only this controller's entries are written; entries of other
controllers are kept as they are. A condition's lastTransitionTime moves only when its status changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from poolgate.api import KubeObject
from poolgate.api.base import GATEWAY_GROUP
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond
from poolgate.translate.resolve import GatewayState, Graph, PoolTarget, ResolvedRoute

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
POOL_API_VERSION = "inference.networking.k8s.io/v1"


@dataclass(frozen=True)
class GatewayRuntime:
    """What the runtime knows about a Gateway's data plane: its addresses and whether it is programmed."""

    addresses: tuple[str, ...] = ()
    programmed: bool = True
    message: str = "Envoy configuration is generated"


@dataclass
class StatusOptions:
    now: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    runtime: dict[tuple[str, str], GatewayRuntime] = field(default_factory=dict)


def conditions_json(conds: list[Cond], generation: int, previous: list[dict] | None, now: str) -> list[dict]:
    """metav1.Conditions for `conds`, keeping a previous condition's lastTransitionTime when its status is unchanged."""
    before = {p.get("type"): p for p in previous or () if isinstance(p, dict)}
    out = []
    for cond in conds:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": since or now,
            }
        )
    return out


def compute_status(graph: Graph, options: StatusOptions | None = None) -> list[dict]:
    """Status objects `{apiVersion, kind, metadata: {name, namespace}, status}` for every GatewayClass of this
    controller, each of its Gateways, every HTTPRoute attached to them and every InferencePool."""
    options = options or StatusOptions()
    out = [
        gateway_class_status(gc, options.now)
        for _, gc in sorted(graph.snapshot.gateway_classes.items())
        if gc.spec.controller_name == graph.snapshot.controller_name
    ]
    out += [gateway_status(state, options) for state in graph.gateways]
    out += [route_status(graph, route, options.now) for route in graph.routes]
    referencing = _pool_references(graph)
    out += [pool_status(graph, key, referencing.get(key, {}), options.now) for key in sorted(graph.pools)]
    return out


def _pool_references(graph: Graph) -> dict[tuple[str, str], dict[tuple[str, str], list[bool]]]:
    """pool -> Gateway (namespace, name) -> whether each route of that Gateway that references the pool is accepted."""
    out: dict[tuple[str, str], dict[tuple[str, str], list[bool]]] = {}
    for route in graph.routes:
        pools = {
            (b.target.pool.namespace, b.target.pool.name)
            for rule in route.rules
            for b in rule.backends
            if isinstance(b.target, PoolTarget)
        }
        for key in pools:
            for result in route.parents:
                gateway = (result.gateway.namespace, result.gateway.name)
                out.setdefault(key, {}).setdefault(gateway, []).append(result.accepted.status)
    return out


def _envelope(obj: KubeObject, api_version: str, status: dict) -> dict:
    metadata = {"name": obj.name}
    if obj.namespace:
        metadata["namespace"] = obj.namespace
    return {"apiVersion": api_version, "kind": obj.kind, "metadata": metadata, "status": status}


def gateway_class_status(gateway_class, now: str) -> dict:
    """GatewayClass status: Accepted, since this controller implements it."""
    previous = gateway_class.status or {}
    conds = [Cond.true(c.ACCEPTED, c.R_ACCEPTED, "poolgate implements this GatewayClass")]
    return _envelope(
        gateway_class,
        GATEWAY_API_VERSION,
        {"conditions": conditions_json(conds, gateway_class.generation, previous.get("conditions"), now)},
    )


def gateway_status(state: GatewayState, options: StatusOptions) -> dict:
    """Gateway status: Accepted and Programmed, addresses, and per listener its conditions and attached routes."""
    gateway = state.gateway
    runtime = options.runtime.get((gateway.namespace, gateway.name), GatewayRuntime())
    previous = gateway.status or {}
    valid = [ls for ls in state.listeners if ls.valid]
    if len(valid) == len(state.listeners):
        accepted = Cond.true(c.ACCEPTED, c.R_ACCEPTED, "Gateway is accepted")
    elif valid:
        accepted = Cond.true(c.ACCEPTED, c.R_LISTENERS_NOT_VALID, "some listeners are invalid; see status.listeners")
    else:
        accepted = Cond.false(c.ACCEPTED, c.R_LISTENERS_NOT_VALID, "no listener is valid; see status.listeners")
    if not valid:
        programmed = Cond.false(c.PROGRAMMED, c.R_INVALID, "no valid listener to program")
    elif runtime.programmed:
        programmed = Cond.true(c.PROGRAMMED, c.R_PROGRAMMED, runtime.message)
    else:
        programmed = Cond.false(c.PROGRAMMED, c.R_PENDING, runtime.message)
    old_listeners = {ls.get("name"): ls for ls in previous.get("listeners", []) if isinstance(ls, dict)}
    listeners = []
    for ls in state.listeners:
        listener_programmed = (
            Cond.true(c.PROGRAMMED, c.R_PROGRAMMED, "Listener is programmed")
            if ls.valid and runtime.programmed
            else Cond.false(
                c.PROGRAMMED,
                c.R_INVALID if not ls.valid else c.R_PENDING,
                "Listener is invalid" if not ls.valid else runtime.message,
            )
        )
        conds = ls.conditions + [listener_programmed]
        listeners.append(
            {
                "name": ls.listener.name,
                "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}]
                if ls.listener.protocol == "HTTP"
                else [],
                "attachedRoutes": len({(a.route.route.namespace, a.route.route.name) for a in ls.attached}),
                "conditions": conditions_json(
                    conds, gateway.generation, old_listeners.get(ls.listener.name, {}).get("conditions"), options.now
                ),
            }
        )
    status = {
        "conditions": conditions_json(
            [accepted, programmed], gateway.generation, previous.get("conditions"), options.now
        ),
        "listeners": listeners,
    }
    if runtime.addresses:
        status["addresses"] = [
            {"type": "Hostname" if any(ch.isalpha() for ch in a) and ":" not in a else "IPAddress", "value": a}
            for a in runtime.addresses
        ]
    return _envelope(gateway, GATEWAY_API_VERSION, status)


def _parent_ref_json(ref, default_namespace: str) -> dict:
    out = {"group": ref.group, "kind": ref.kind, "name": ref.name, "namespace": ref.namespace or default_namespace}
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out


def route_status(graph: Graph, route: ResolvedRoute, now: str) -> dict:
    """HTTPRoute status: one parents entry per parentRef naming one of our Gateways; other controllers' kept."""
    obj = route.route
    ours = graph.snapshot.controller_name
    previous = [p for p in (obj.status or {}).get("parents", []) if isinstance(p, dict)]
    kept = [p for p in previous if p.get("controllerName") != ours]
    old = {_key(p.get("parentRef", {}), obj.namespace): p for p in previous if p.get("controllerName") == ours}
    parents = []
    for result in route.parents:
        ref = _parent_ref_json(result.parent_ref, obj.namespace)
        conds = [cond for cond in (result.accepted, route.resolved_refs, route.partially_invalid) if cond is not None]
        parents.append(
            {
                "parentRef": ref,
                "controllerName": ours,
                "conditions": conditions_json(
                    conds, obj.generation, old.get(_key(ref, obj.namespace), {}).get("conditions"), now
                ),
            }
        )
    return _envelope(obj, GATEWAY_API_VERSION, {"parents": kept + parents})


def _key(ref: dict, default_namespace: str) -> tuple:
    return (
        ref.get("group", GATEWAY_GROUP),
        ref.get("kind", "Gateway"),
        ref.get("namespace") or default_namespace,
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


def pool_status(graph: Graph, key: tuple[str, str], referencing: dict[tuple[str, str], list[bool]], now: str) -> dict:
    """InferencePool status.parents: one entry per Gateway of ours whose routes reference the pool (`referencing`:
    Gateway -> whether each such route is accepted there; Accepted when one is), other controllers' entries kept,
    none when unreferenced."""
    target = graph.pools[key]
    pool = target.pool
    ours = graph.snapshot.controller_name
    previous = [p.to_json() for p in pool.status.parents]
    kept = [p for p in previous if p.get("controllerName") != ours]
    old = {
        (p["parentRef"].get("namespace") or pool.namespace, p["parentRef"]["name"]): p
        for p in previous
        if p.get("controllerName") == ours
    }
    parents = []
    for (gw_namespace, gw_name), accepted_flags in sorted(referencing.items()):
        if not any(accepted_flags):
            accepted = Cond.false(
                c.ACCEPTED,
                c.R_HTTPROUTE_NOT_ACCEPTED,
                "no HTTPRoute referencing this pool is accepted by the Gateway; see the HTTPRoute status",
            )
        else:
            accepted = target.accepted
        parents.append(
            {
                "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw_name, "namespace": gw_namespace},
                "controllerName": ours,
                "conditions": conditions_json(
                    [accepted, target.resolved_refs],
                    pool.generation,
                    old.get((gw_namespace, gw_name), {}).get("conditions"),
                    now,
                ),
            }
        )
    return _envelope(pool, POOL_API_VERSION, {"parents": kept + parents})
