"""InferencePool hooks: poolgate's `status.parents` entries (one per poolgate Gateway whose routes use the pool),
the headless Service that publishes the pool's endpoints to Envoy (while a poolgate Gateway uses the pool), and the
managed endpoint picker when the pool asks for one. Other controllers' entries are kept as they are."""

from __future__ import annotations

from hooks import picker
from hooks.httproute import pool_label
from hooks.metacontroller import (
    SyncRequest,
    as_declared,
    customize_response,
    parse_customize,
    parse_sync,
    related_rule,
)
from hooks.raw import mapping
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
from poolgate.api import InferencePool, InvalidObjects, KubeObject
from poolgate.api.base import GATEWAY_GROUP, INFERENCE_GROUP
from poolgate.api.contract import CONTROLLER_NAME, GATEWAY_CLASS_LABEL, GATEWAY_LABEL, POOL_LABEL_PREFIX
from poolgate.translate import StatusOptions, naming, translate
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond

KIND = ("InferencePool",)
GATEWAY_API = "gateway.networking.k8s.io/v1"


def customize(body: object, settings: HookSettings) -> dict:
    """What a pool's status needs: the routes that route to it through a poolgate Gateway (they carry its pool
    label), poolgate's Gateways and GatewayClasses (labelled by their hooks), every Namespace (listener namespace
    selectors), the ReferenceGrants of the pool's namespace, and the picker Services it may name (its
    endpointPickerRef and the managed picker's)."""
    pool = parse_customize(body, KIND)
    classes = related_rule(GATEWAY_API, "gatewayclasses", label_selector=_label(GATEWAY_CLASS_LABEL))
    return customize_response(related_rules(pool, settings, POOL_LABEL_PREFIX, GATEWAY_LABEL, classes))


def related_rules(pool: dict, settings: HookSettings, route_prefix: str, gateway_label: str, classes: dict) -> list:
    """The related rules of a pool whose routes carry its pool label of `route_prefix`, on Gateways labelled
    `gateway_label`, of the GatewayClasses `classes` selects."""
    namespace = pool["metadata"].get("namespace") or "default"
    ref = mapping(mapping(pool.get("spec")).get("endpointPickerRef"))
    pickers = [naming.managed_picker(pool["metadata"]["name"])]
    if (ref.get("group", ""), ref.get("kind", "Service")) == ("", "Service") and isinstance(ref.get("name"), str):
        pickers.append(ref["name"])
    label = pool_label(namespace, pool["metadata"]["name"], route_prefix)
    return [
        related_rule(GATEWAY_API, "httproutes", label_selector=_label(label)),
        related_rule(GATEWAY_API, "gateways", label_selector=_label(gateway_label)),
        classes,
        related_rule("v1", "namespaces", label_selector={}),
        related_rule(settings.reference_grant_api, "referencegrants", namespace=namespace),
        related_rule("v1", "services", namespace=namespace, names=pickers),
    ]


def _label(key: str) -> dict:
    return {"matchLabels": {key: "true"}}


def sync(body: object, settings: HookSettings) -> dict:
    """The pool's status entries, its endpoints Service and its managed picker."""
    request = parse_sync(body, KIND)
    related, _ = request.related_objects()
    now = transition_time(request.object, request.attachments, request.related)
    try:
        pool = request.typed_object(InferencePool)
    except InvalidObjects as error:
        return _invalid(request, related, problems_message(error.problems), now)
    status = translate([pool, *related]).status(StatusOptions(now=now))
    ours = computed_entries(status, "InferencePool", pool.namespace, pool.name)
    attachments = [picker.endpoints_service(pool)] if ours else []
    if picker.wants_managed_picker(pool):
        attachments += picker.managed_picker(pool, settings)
    return shared_status_response(with_parents(request.object, ours), attachments)


def _invalid(request: SyncRequest, related: list[KubeObject], message: str, now: str) -> dict:
    """Accepted False (NotSupportedByParent, naming the invalid fields) for each poolgate Gateway whose routes use
    the pool; the pool's Services and picker stay as last declared until the pool is fixed."""
    raw = request.object
    namespace, name = request.namespace or "default", request.name
    previous = {
        _gateway_key(mapping(entry.get("parentRef")), namespace): entry
        for entry in observed_parents(raw)
        if is_ours(entry)
    }
    entries = []
    for gw_namespace, gw_name in sorted(_gateways_using(related, namespace, name)):
        old = mapping(previous.get((gw_namespace, gw_name)))
        cond = Cond.false(c.ACCEPTED, c.R_NOT_SUPPORTED_BY_PARENT, message)
        entries.append(
            {
                "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw_name, "namespace": gw_namespace},
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions([cond], raw, old.get("conditions"), now),
            }
        )
    return shared_status_response(with_parents(raw, entries), as_declared(request.attachments))


def _gateways_using(related: list[KubeObject], namespace: str, name: str) -> set[tuple[str, str]]:
    """poolgate Gateways with a route whose backendRefs (permitted ones) name the pool namespace/name."""
    graph = translate(related).graph
    out: set[tuple[str, str]] = set()
    for route in graph.routes:
        for rule in route.rules:
            for backend in rule.backends:
                ref = backend.ref
                if (ref.group, ref.kind, ref.namespace or route.route.namespace, ref.name) != (
                    INFERENCE_GROUP,
                    "InferencePool",
                    namespace,
                    name,
                ):
                    continue
                if backend.problem is None or backend.problem.reason != c.R_REF_NOT_PERMITTED:
                    out.update((p.gateway.namespace, p.gateway.name) for p in route.parents)
    return out


def _gateway_key(parent_ref: dict, default_namespace: str) -> tuple[object, object]:
    return parent_ref.get("namespace") or default_namespace, parent_ref.get("name")
