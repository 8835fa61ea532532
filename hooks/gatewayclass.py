"""GatewayClass hooks: accept poolgate's classes, and keep a class from being deleted while Gateways use it.

Two DecoratorControllers, because the Metacontroller finalizer must only ever be put on poolgate's own classes:
- `poolgate-gatewayclasses` watches every GatewayClass. For those naming poolgate's controllerName it writes the
  Accepted condition and the label `poolgate.dev/gateway-class: "true"`; other classes are left untouched.
- `poolgate-gatewayclass-finalizer` watches only the labelled classes and has a finalize hook, so Metacontroller
  holds a finalizer on them: a class being deleted is released only when no Gateway names it any more (the
  behaviour Gateway API describes with its `gateway-exists-finalizer.gateway.networking.k8s.io` finalizer)."""

from __future__ import annotations

from hooks.metacontroller import customize_response, parse_customize, parse_sync, related_rule, sync_response
from hooks.raw import mapping
from hooks.settings import HookSettings
from hooks.status import conditions, problems_message
from hooks.timestamps import transition_time
from poolgate.api import GatewayClass, InvalidObjects
from poolgate.api.contract import CONTROLLER_NAME, GATEWAY_CLASS_LABEL
from poolgate.translate import StatusOptions, translate
from poolgate.translate import conditions as c
from poolgate.translate.conditions import Cond

KIND = ("GatewayClass",)
R_INVALID_PARAMETERS = "InvalidParameters"


def sync(body: object, settings: HookSettings) -> dict:
    """Accepted (and the class label) for a GatewayClass of poolgate's controllerName; nothing for any other."""
    request = parse_sync(body, KIND)
    raw = request.object
    if mapping(raw.get("spec")).get("controllerName") != CONTROLLER_NAME:
        return sync_response()
    now = transition_time(request.object)
    labels = {GATEWAY_CLASS_LABEL: "true"}
    try:
        gateway_class = request.typed_object(GatewayClass)
    except InvalidObjects as error:
        previous = mapping(raw.get("status")).get("conditions")
        cond = Cond.false(c.ACCEPTED, R_INVALID_PARAMETERS, problems_message(error.problems))
        return sync_response({"conditions": conditions([cond], raw, previous, now)}, labels=labels)
    status = translate([gateway_class]).status(StatusOptions(now=now))[0]["status"]
    return sync_response(status, labels=labels)


def finalizer_customize(body: object, settings: HookSettings) -> dict:
    """The finalizer needs every Gateway (of any namespace) to know whether the class is still in use."""
    parse_customize(body, KIND)
    return customize_response([related_rule("gateway.networking.k8s.io/v1", "gateways", label_selector={})])


def finalizer_sync(body: object, settings: HookSettings) -> dict:
    """Nothing to do while the class lives; when it is being deleted, release it once no Gateway uses it."""
    request = parse_sync(body, KIND)
    if not request.finalizing:
        return sync_response()
    deleting = bool(request.object["metadata"].get("deletionTimestamp"))
    in_use = any(
        gw.get("kind") == "Gateway" and mapping(gw.get("spec")).get("gatewayClassName") == request.name
        for gw in request.related
    )
    return sync_response(finalized=not (deleting and in_use))
