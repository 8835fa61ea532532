"""HTTPRoute hooks: poolgate's `status.parents` entries (Accepted, ResolvedRefs, PartiallyInvalid) for each parentRef
naming a poolgate Gateway; other controllers' entries are kept, and poolgate's entry for a parent the route no
longer names is removed."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

from pydantic import ValidationError

from hooks.metacontroller import customize_response, parse_customize, parse_sync, related_rule
from hooks.raw import items, mapping
from hooks.settings import HookSettings
from hooks.status import (
    computed_entries,
    conditions,
    is_ours,
    observed_parents,
    problems_message,
    shared_status_response,
    with_parents,
)
from hooks.timestamps import transition_time
from poolgate.api import Gateway, GatewayClass, HTTPRoute, InvalidObjects, KubeObject
from poolgate.api.base import GATEWAY_GROUP, INFERENCE_GROUP
from poolgate.api.contract import CONTROLLER_NAME, POOL_LABEL_PREFIX
from poolgate.api.gateway import ParentReference
from poolgate.translate import StatusOptions, translate
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond

KIND = ("HTTPRoute",)
GATEWAY_API = "gateway.networking.k8s.io/v1"


def customize(body: object, settings: HookSettings) -> dict:
    """What a route's status needs: the Gateways it names, every GatewayClass (to tell poolgate's Gateways), its
    own Namespace (for listener namespace selectors), the pools and Services its backendRefs name, and the
    ReferenceGrants of the namespaces those lie in when they are not the route's own."""
    route = parse_customize(body, KIND)
    namespace = route["metadata"].get("namespace") or "default"
    spec = mapping(route.get("spec"))
    gateways: dict[str, set[str]] = defaultdict(set)
    for ref in map(mapping, items(spec.get("parentRefs"))):
        if (ref.get("group", GATEWAY_GROUP), ref.get("kind", "Gateway")) == (GATEWAY_GROUP, "Gateway"):
            _add(gateways, _text(ref.get("namespace")) or namespace, ref.get("name"))
    pools, services = backend_refs(route, namespace)
    rules = [
        related_rule(GATEWAY_API, "gatewayclasses", label_selector={}),
        related_rule("v1", "namespaces", names=[namespace]),
    ]
    rules += [related_rule(GATEWAY_API, "gateways", namespace=ns, names=list(names)) for ns, names in gateways.items()]
    rules += [
        related_rule("inference.networking.k8s.io/v1", "inferencepools", namespace=ns, names=list(names))
        for ns, names in pools.items()
    ]
    rules += [related_rule("v1", "services", namespace=ns, names=list(names)) for ns, names in services.items()]
    rules += [
        related_rule(settings.reference_grant_api, "referencegrants", namespace=ns)
        for ns in sorted((set(pools) | set(services)) - {namespace})
    ]
    return customize_response(rules)


def sync(body: object, settings: HookSettings) -> dict:
    """The route's status with poolgate's parents entries recomputed (None when it has none, before or after), and
    its pool labels."""
    request = parse_sync(body, KIND)
    related, _ = request.related_objects()
    pools, _ = backend_refs(request.object, request.namespace or "default")
    gateways = _poolgate_gateways(related)
    labels = pool_labels(request.object, pools, bool(gateways))
    now = transition_time(request.object, request.attachments, request.related)
    try:
        route = request.typed_object(HTTPRoute)
    except InvalidObjects as error:
        ours = invalid_entries(request.object, gateways, problems_message(error.problems), now)
    else:
        status = translate([route, *related]).status(StatusOptions(now=now))
        ours = computed_entries(status, "HTTPRoute", route.namespace, route.name)
    return shared_status_response(with_parents(request.object, ours), labels=labels)


def pool_label(namespace: str, name: str, prefix: str = POOL_LABEL_PREFIX) -> str:
    """The label a route carries while it names a Gateway the hooks serve (poolgate's own with the default
    `prefix`) and routes to the pool namespace/name: the pool's hook asks for exactly the routes carrying its label,
    not every route of the cluster."""
    return prefix + hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:40]


def pool_labels(
    raw: dict, pools: dict[str, set[str]], serves: bool, prefix: str = POOL_LABEL_PREFIX
) -> dict[str, str | None]:
    """The route's pool labels of `prefix`: one per pool it routes to while it names a Gateway the hooks serve;
    None (delete) for labels of pools it no longer routes to."""
    wanted: dict[str, str | None] = (
        {pool_label(ns, name, prefix): "true" for ns, names in pools.items() for name in names} if serves else {}
    )
    observed = mapping(mapping(raw.get("metadata")).get("labels"))
    stale = {key: None for key in observed if key.startswith(prefix) and key not in wanted}
    return {**wanted, **stale}


def backend_refs(raw: dict, namespace: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The InferencePools and Services the route's backendRefs name, by namespace."""
    pools: dict[str, set[str]] = defaultdict(set)
    services: dict[str, set[str]] = defaultdict(set)
    for rule in map(mapping, items(mapping(raw.get("spec")).get("rules"))):
        for ref in map(mapping, items(rule.get("backendRefs"))):
            target = {(INFERENCE_GROUP, "InferencePool"): pools, ("", "Service"): services}.get(
                (ref.get("group", ""), ref.get("kind", "Service"))
            )
            if target is not None:
                _add(target, _text(ref.get("namespace")) or namespace, ref.get("name"))
    return pools, services


def _poolgate_gateways(related: list[KubeObject]) -> set[tuple[str, str]]:
    """The related Gateways (those the route names) of a poolgate GatewayClass."""
    ours = {o.name for o in related if isinstance(o, GatewayClass) and o.spec.controller_name == CONTROLLER_NAME}
    return {(o.namespace, o.name) for o in related if isinstance(o, Gateway) and o.spec.gateway_class_name in ours}


def invalid_entries(
    raw: dict, gateways: set[tuple[str, str]], message: str, now: str, controller: str = CONTROLLER_NAME
) -> list[dict]:
    """`controller`'s Accepted False (UnsupportedValue, naming the invalid fields) for each parentRef naming one of
    `gateways` (namespace, name)."""
    namespace = raw["metadata"].get("namespace") or "default"
    previous = {_key(entry.get("parentRef")): entry for entry in observed_parents(raw) if is_ours(entry, controller)}
    entries: dict[str, dict] = {}
    for ref in items(mapping(raw.get("spec")).get("parentRefs")):
        try:
            parent = ParentReference.model_validate(ref)
        except ValidationError:
            continue
        parent_ref = {**parent.to_json(), "namespace": parent.namespace or namespace}
        if (parent.group, parent.kind) != (GATEWAY_GROUP, "Gateway") or (
            parent_ref["namespace"],
            parent.name,
        ) not in gateways:
            continue
        old = mapping(previous.get(_key(parent_ref)))
        cond = Cond.false(c.ACCEPTED, c.R_UNSUPPORTED_VALUE, message)
        entries[_key(parent_ref)] = {
            "parentRef": parent_ref,
            "controllerName": controller,
            "conditions": conditions([cond], raw, old.get("conditions"), now),
        }
    return list(entries.values())


def _key(parent_ref: object) -> str:
    return json.dumps(parent_ref, sort_keys=True)


def _add(index: dict[str, set[str]], namespace: object, name: object) -> None:
    if isinstance(namespace, str) and isinstance(name, str) and name:
        index[namespace].add(name)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
