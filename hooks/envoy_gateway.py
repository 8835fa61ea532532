"""Envoy Gateway hooks (opt-in, metacontroller/envoy-gateway/): for Gateways whose class belongs to Envoy Gateway,
the resources `poolgate translate --target envoy-gateway` emits, composed as attachments of the object whose
namespace they live in (a DecoratorController's attachments live in its parent's namespace), and the same status
that command reports (`--status`):

- Gateway: the sibling Gateway, its ClientTrafficPolicy and EnvoyPatchPolicy (only the EnvoyPatchPolicy, on the
  user's Gateway, with the setting envoyGatewayAtUserGateway); no status (Envoy Gateway owns it);
- HTTPRoute: the companion route and the companion's EnvoyExtensionPolicies, BackendTrafficPolicies and picker
  Backends; its `status.parents` entries of controllerName poolgate.dev/envoy-gateway;
- InferencePool: the Service standing for its pods and the ReferenceGrants letting the companions of routes in
  other namespaces reach it; its entries of controllerName poolgate.dev/envoy-gateway.

Each hook translates what its object relates with the Envoy Gateway target and keeps its own part; Gateways, routes
and pools of poolgate's own class are left to the other hooks (and theirs to these)."""

from __future__ import annotations

from hooks import gateway as own_gateway
from hooks import httproute, inferencepool
from hooks.metacontroller import (
    as_declared,
    customize_response,
    parse_customize,
    parse_sync,
    related_rule,
    sync_response,
)
from hooks.raw import mapping
from hooks.settings import HookSettings
from hooks.status import computed_entries, problems_message, shared_status_response, with_parents
from hooks.timestamps import transition_time
from poolgate.api import Gateway, GatewayClass, HTTPRoute, InferencePool, InvalidObjects, KubeObject
from poolgate.egtarget import STATUS_CONTROLLER, EnvoyGatewayOptions, translate_envoy_gateway
from poolgate.egtarget import names as eg_names
from poolgate.egtarget.objects import SOURCE_ANNOTATION, pool_service
from poolgate.translate import StatusOptions
from poolgate.translate.options import TranslateOptions

GATEWAY_API = "gateway.networking.k8s.io/v1"
# On Gateways of Envoy Gateway's class (set by the Gateway hook): pools relate those Gateways only.
EG_GATEWAY_LABEL = "poolgate.dev/envoy-gateway"
# + a pool's hash, on HTTPRoutes that name an Envoy Gateway Gateway and forward to the pool: the pool relates them.
EG_POOL_LABEL_PREFIX = "eg-pools.poolgate.dev/"
GATEWAY_PARTS = ("Gateway", "ClientTrafficPolicy", "EnvoyPatchPolicy")
ROUTE_PARTS = ("HTTPRoute", "EnvoyExtensionPolicy", "BackendTrafficPolicy", "Backend")


def _translate(objects: list[KubeObject], settings: HookSettings):
    options = EnvoyGatewayOptions(
        controller_name=settings.envoy_gateway_controller_name,
        at_user_gateway=settings.envoy_gateway_at_user_gateway,
        translate=TranslateOptions(cluster_domain=settings.cluster_domain),
    )
    return translate_envoy_gateway(objects, options)


def _in(objects: list[dict], kinds: tuple[str, ...], namespace: str) -> list[dict]:
    return [o for o in objects if o["kind"] in kinds and o["metadata"]["namespace"] == namespace]


def _eg_gateways(related: list[KubeObject], settings: HookSettings) -> set[tuple[str, str]]:
    """The related Gateways of a GatewayClass of Envoy Gateway's controllerName."""
    classes = {
        o.name
        for o in related
        if isinstance(o, GatewayClass) and o.spec.controller_name == settings.envoy_gateway_controller_name
    }
    return {(o.namespace, o.name) for o in related if isinstance(o, Gateway) and o.spec.gateway_class_name in classes}


# --- Gateways -----------------------------------------------------------------------------------------------------


def gateway_customize(body: object, settings: HookSettings) -> dict:
    """What translating a Gateway needs: as for poolgate's own Gateways (its class, the routes its listeners may
    admit, the Namespaces their selectors test, the pools, Services and ReferenceGrants of every namespace)."""
    return own_gateway.customize(body, settings)


def gateway_sync(body: object, settings: HookSettings) -> dict:
    """The sibling Gateway, ClientTrafficPolicy and EnvoyPatchPolicy of an Envoy Gateway Gateway (all named after
    the sibling); nothing for a Gateway of another class. The Gateway's status stays Envoy Gateway's."""
    request = parse_sync(body, ("Gateway",))
    related, _ = request.related_objects()
    raw = request.object
    class_name = mapping(raw.get("spec")).get("gatewayClassName")
    gateway_class = next((o for o in related if isinstance(o, GatewayClass) and o.name == class_name), None)
    labelled = EG_GATEWAY_LABEL in mapping(mapping(raw.get("metadata")).get("labels"))
    if gateway_class is None or gateway_class.spec.controller_name != settings.envoy_gateway_controller_name:
        return sync_response(labels={EG_GATEWAY_LABEL: None} if labelled else None)
    labels = {EG_GATEWAY_LABEL: "true"}
    try:
        gateway = request.typed_object(Gateway)
    except InvalidObjects:  # Envoy Gateway reports it; what was generated keeps serving until it is fixed
        return sync_response(attachments=as_declared(request.attachments), labels=labels)
    objects = _translate([*related, gateway], settings).objects()  # the parent last: it replaces a stale copy
    sibling = eg_names.sibling_gateway(gateway.name)
    mine = [o for o in _in(objects, GATEWAY_PARTS, gateway.namespace) if o["metadata"]["name"] == sibling]
    return sync_response(attachments=mine, labels=labels)


# --- HTTPRoutes ---------------------------------------------------------------------------------------------------


def route_customize(body: object, settings: HookSettings) -> dict:
    """What a route's objects and status need: as for poolgate's own Gateways (the Gateways it names, every
    GatewayClass, its Namespace, the pools and Services its backendRefs name and the ReferenceGrants they need), and
    the Services of its pools' namespaces, among them the pools' pickers (which the companion's policies call)."""
    route = parse_customize(body, ("HTTPRoute",))
    pools, _ = httproute.backend_refs(route, route["metadata"].get("namespace") or "default")
    rules = httproute.customize(body, settings)["relatedResources"]
    rules += [related_rule("v1", "services", namespace=namespace) for namespace in pools]
    return customize_response(rules)


def route_sync(body: object, settings: HookSettings) -> dict:
    """The route's companion and its policies and picker Backends, its entries of controllerName
    poolgate.dev/envoy-gateway (None when it has none, before or after), and its Envoy Gateway pool labels."""
    request = parse_sync(body, ("HTTPRoute",))
    related, _ = request.related_objects()
    namespace = request.namespace or "default"
    gateways = _eg_gateways(related, settings)
    pools, _ = httproute.backend_refs(request.object, namespace)
    labels = httproute.pool_labels(request.object, pools, bool(gateways), EG_POOL_LABEL_PREFIX)
    now = transition_time(request.object, request.attachments, request.related)
    try:
        route = request.typed_object(HTTPRoute)
    except InvalidObjects as error:
        message = problems_message(error.problems)
        ours = httproute.invalid_entries(request.object, gateways, message, now, STATUS_CONTROLLER)
        status = with_parents(request.object, ours, STATUS_CONTROLLER)
        return shared_status_response(status, as_declared(request.attachments), labels)
    translation = _translate([route, *related], settings)
    attachments = _in(translation.objects(), ROUTE_PARTS, namespace)
    computed = translation.status(StatusOptions(now=now))
    ours = computed_entries(computed, "HTTPRoute", namespace, route.name, STATUS_CONTROLLER)
    return shared_status_response(with_parents(request.object, ours, STATUS_CONTROLLER), attachments, labels)


# --- InferencePools -----------------------------------------------------------------------------------------------


def pool_customize(body: object, settings: HookSettings) -> dict:
    """What a pool's objects and status need: the routes that route to it through an Envoy Gateway Gateway (they
    carry its Envoy Gateway pool label), those Gateways (labelled by the Gateway hook), every GatewayClass, every
    Namespace, the ReferenceGrants of its namespace, the picker Services it may name, and every InferencePool (a
    rule splitting across pools is served, and needs grants, only with all of its pools)."""
    pool = parse_customize(body, ("InferencePool",))
    classes = related_rule(GATEWAY_API, "gatewayclasses", label_selector={})
    rules = inferencepool.related_rules(pool, settings, EG_POOL_LABEL_PREFIX, EG_GATEWAY_LABEL, classes)
    rules.append(related_rule("inference.networking.k8s.io/v1", "inferencepools", label_selector={}))
    return customize_response(rules)


def pool_sync(body: object, settings: HookSettings) -> dict:
    """The Service standing for the pool's pods while an Envoy Gateway Gateway's route uses it (while the pool has
    an entry of controllerName poolgate.dev/envoy-gateway), the ReferenceGrants for the pool's routes in other
    namespaces, and those entries."""
    request = parse_sync(body, ("InferencePool",))
    related, _ = request.related_objects()
    try:
        pool = request.typed_object(InferencePool)
    except InvalidObjects:  # its routes' entries say the backend is invalid; the Service keeps serving meanwhile
        return sync_response(None, as_declared(request.attachments))
    now = transition_time(request.object, request.attachments, request.related)
    translation = _translate([pool, *related], settings)
    computed = translation.status(StatusOptions(now=now))
    ours = computed_entries(computed, "InferencePool", pool.namespace, pool.name, STATUS_CONTROLLER)
    target = translation.plan.pools.get((pool.namespace, pool.name))
    attachments = [pool_service(target)] if ours and target is not None else []
    attachments += [
        o
        for o in _in(translation.objects(), ("ReferenceGrant",), pool.namespace)
        if o["metadata"]["annotations"][SOURCE_ANNOTATION] == pool.ref
    ]
    return shared_status_response(with_parents(request.object, ours, STATUS_CONTROLLER), attachments)
