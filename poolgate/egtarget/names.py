"""Names of what the Envoy Gateway target generates, and Envoy Gateway's names for what it builds from them."""

from __future__ import annotations

from poolgate.translate.naming import dns_label

# Envoy Gateway's cluster of an HTTPRoute rule (internal/gatewayapi/helpers.go, irRouteDestinationName).
RULE_CLUSTER = "httproute/{namespace}/{name}/rule/{index}"
# Envoy Gateway's ext_proc filter of an EnvoyExtensionPolicy's first extProc entry (internal/xds/translator/extproc.go).
EXT_PROC_FILTER = "envoy.filters.http.ext_proc/envoyextensionpolicy/{namespace}/{policy}/extproc/{index}"
# The companion route's last rule when the route routes by model: it matches what no other rule does before the model
# router has set X-Gateway-Model-Name, so that the model router (and the pools' pickers) run on it.
MODEL_ROUTING_RULE = "poolgate-model-routing"


def sibling_gateway(gateway: str) -> str:
    """The Gateway poolgate creates next to a user's Envoy Gateway Gateway."""
    return dns_label(gateway, "poolgate")


def companion_route(route: str) -> str:
    """The HTTPRoute poolgate creates for a user's route, on the sibling Gateways."""
    return dns_label(route, "poolgate")


def pool_service(pool: str) -> str:
    """The Service that stands for a pool's pods (Envoy Gateway routes to Services, not InferencePools)."""
    return dns_label(pool, "poolgate")


def rule_cluster(namespace: str, route: str, index: int) -> str:
    """Envoy Gateway's name of the cluster of rule `index` of the companion of `namespace/route`."""
    return RULE_CLUSTER.format(namespace=namespace, name=companion_route(route), index=index)


def route_policy(route: str, part: str) -> str:
    """A policy poolgate creates for the companion of `route`: per pool (`part` = the pool's name) or per split rule."""
    return dns_label(route, "poolgate", part)


def ext_proc_filter(namespace: str, policy: str, index: int = 0) -> str:
    """Envoy Gateway's name of the ext_proc filter of extProc entry `index` of the EnvoyExtensionPolicy
    `namespace/policy`."""
    return EXT_PROC_FILTER.format(namespace=namespace, policy=policy, index=index)


def picker_backend(route: str, service: str, namespace: str) -> str:
    """The Envoy Gateway Backend through which the companion of `route` reaches the picker Service
    `namespace/service` over TLS: one per route, so that each route's objects are its own (the hooks attach them to
    the route)."""
    return dns_label(route, service, namespace, "poolgate")
