"""Gateway hooks: for each Gateway of a poolgate GatewayClass, its Envoy (ConfigMap, Deployment, Service) and status
(Accepted, Programmed, listeners, addresses). Gateways of other classes get nothing: no attachments, status
untouched."""

from __future__ import annotations

from pydantic import ValidationError

from hooks import envoy
from hooks.metacontroller import (
    SyncRequest,
    as_declared,
    customize_response,
    parse_customize,
    parse_sync,
    related_rule,
    sync_response,
)
from hooks.raw import items, mapping
from hooks.settings import HookSettings
from hooks.status import conditions, problems_message
from hooks.timestamps import transition_time
from poolgate.api import Gateway, GatewayClass, InvalidObjects, LabelSelector
from poolgate.api.contract import CONTROLLER_NAME, GATEWAY_LABEL
from poolgate.api.load import KINDS
from poolgate.translate import StatusOptions, translate
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond

KIND = ("Gateway",)
GATEWAY_API = "gateway.networking.k8s.io/v1"
OUR_GATEWAY = {GATEWAY_LABEL: "true"}


# The InferenceModelRewrite versions poolgate installs (crds/): a related rule naming a version the cluster does not
# serve would fail every sync of the Gateways.
MODEL_REWRITE_API_VERSIONS = KINDS["InferenceModelRewrite"][1]


def customize(body: object, settings: HookSettings) -> dict:
    """What translating a Gateway needs: its class; the routes its listeners may admit (its own namespace, the
    namespaces a selector picks, or all); the Namespaces such selectors test; and the pools, Services,
    ReferenceGrants and InferenceModelRewrites of every namespace, since admitted routes may point across
    namespaces (a pool an InferenceModelRewrite names keeps its responses on the picking call). Never Pods: Envoy
    resolves pool endpoints through each pool's headless Service."""
    gateway = parse_customize(body, KIND)
    namespace = gateway["metadata"].get("namespace") or "default"
    spec = mapping(gateway.get("spec"))
    rules = [
        related_rule("inference.networking.k8s.io/v1", "inferencepools", label_selector={}),
        related_rule("v1", "services", label_selector={}),
        related_rule(settings.reference_grant_api, "referencegrants", label_selector={}),
        *(related_rule(api, "inferencemodelrewrites", label_selector={}) for api in MODEL_REWRITE_API_VERSIONS),
    ]
    if isinstance(spec.get("gatewayClassName"), str):
        rules.append(related_rule(GATEWAY_API, "gatewayclasses", names=[spec["gatewayClassName"]]))
    route_rules = []
    for listener in items(spec.get("listeners")):
        admitted = mapping(mapping(mapping(listener).get("allowedRoutes")).get("namespaces"))
        source = admitted.get("from", "Same")
        if source == "All":
            route_rules = [related_rule(GATEWAY_API, "httproutes", label_selector={})]
            break
        if source == "Selector":
            selector = _label_selector(admitted.get("selector"))
            route_rules += [
                related_rule(GATEWAY_API, "httproutes", namespace_selector=selector),
                related_rule("v1", "namespaces", label_selector=selector),
            ]
        elif source == "Same":
            route_rules.append(related_rule(GATEWAY_API, "httproutes", namespace=namespace))
    return customize_response(rules + route_rules)


def _label_selector(raw: object) -> dict:
    """A listener's namespace selector in the form Metacontroller parses; one selecting everything when it is not a
    valid selector (the Gateway is then reported invalid, and nothing is missed meanwhile)."""
    try:
        return LabelSelector.model_validate(raw).to_json()
    except ValidationError:
        return {}


def sync(body: object, settings: HookSettings) -> dict:
    """The Envoy objects and status of a poolgate Gateway; nothing for a Gateway of another class."""
    request = parse_sync(body, KIND)
    related, _ = request.related_objects()
    raw = request.object
    class_name = mapping(raw.get("spec")).get("gatewayClassName")
    gateway_class = next((o for o in related if isinstance(o, GatewayClass) and o.name == class_name), None)
    if gateway_class is None or gateway_class.spec.controller_name != CONTROLLER_NAME:
        labelled = GATEWAY_LABEL in mapping(mapping(raw.get("metadata")).get("labels"))
        return sync_response(labels={GATEWAY_LABEL: None} if labelled else None)
    now = transition_time(request.object, request.attachments, request.related)
    name, namespace = request.name, request.namespace or "default"
    runtime = envoy.runtime(
        request.attachment("Deployment", envoy.envoy_name(name)),
        request.attachment("Service", envoy.envoy_name(name)),
        namespace,
        name,
    )
    try:
        gateway = request.typed_object(Gateway)
    except InvalidObjects as error:
        return _invalid(request, problems_message(error.problems), now)
    # the parent last: a stale copy of it among the related objects must not replace it
    translation = translate([*related, gateway], envoy.options(settings), gateways={(namespace, name)})
    ports = sorted({listener.port for listener in translation.ir.listeners})
    attachments = envoy.objects(name, namespace, ports, translation.discovery_files(), settings)
    status = translation.status(StatusOptions(now=now, runtime={(namespace, name): runtime}))
    mine = next(s["status"] for s in status if s["kind"] == "Gateway")
    return sync_response(mine, attachments, labels=OUR_GATEWAY)


def _invalid(request: SyncRequest, message: str, now: str) -> dict:
    """Accepted and Programmed False naming the invalid fields; the Envoy objects stay as last declared, so the
    running configuration keeps serving until the Gateway is fixed."""
    raw = request.object
    previous = mapping(raw.get("status")).get("conditions")
    conds = [
        Cond.false(c.ACCEPTED, c.R_INVALID, message),
        Cond.false(c.PROGRAMMED, c.R_INVALID, "the Gateway is invalid; Envoy keeps its last valid configuration"),
    ]
    status = {"conditions": conditions(conds, raw, previous, now), "listeners": []}
    return sync_response(status, as_declared(request.attachments), labels=OUR_GATEWAY)
