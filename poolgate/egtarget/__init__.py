"""The Envoy Gateway target: the same InferencePools served by a cluster's existing Envoy Gateway (v1.5+) instead of
poolgate's own Envoy. Pure: objects in, Envoy Gateway resources and status out (docs/envoy-gateway.md).

objects -> Snapshot (Gateways of Envoy Gateway's class) -> Graph (resolve) -> Plan (what this target serves)
        -> Kubernetes objects (objects.py); Plan -> InferencePool and HTTPRoute status (status.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from poolgate.api import KubeObject
from poolgate.api.snapshot import Snapshot
from poolgate.egtarget.objects import CalloutService, build_objects
from poolgate.egtarget.plan import STATUS_CONTROLLER, Plan, plan
from poolgate.translate.options import TranslateOptions
from poolgate.translate.resolve import resolve
from poolgate.translate.status import GATEWAY_API_VERSION, StatusOptions, compute_status

EG_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
EG_PROTOCOLS = ("HTTP", "HTTPS")  # listener protocols HTTPRoutes attach to that Envoy Gateway serves


@dataclass(frozen=True)
class EnvoyGatewayOptions:
    """How to translate: Envoy Gateway's controllerName, the class of the Gateways poolgate creates (default: the
    user's Gateway's class), whether the pickers are called over TLS (default, as pickers serve it by default), and
    the translator options the generated policies follow (body mode, buffer limit, picker timeout, retries)."""

    controller_name: str = EG_CONTROLLER
    gateway_class: str | None = None
    picker_tls: bool = True
    model_router: CalloutService | None = None  # the model router's Service (`poolgate picker --role model-router`)
    at_user_gateway: bool = False  # companions on the user's Gateways instead of siblings (no model routing)
    translate: TranslateOptions = field(default_factory=TranslateOptions)


@dataclass
class EnvoyGatewayTranslation:
    """The result of translating one set of objects for Envoy Gateway."""

    plan: Plan
    options: EnvoyGatewayOptions

    def objects(self) -> list[dict]:
        """The Kubernetes objects to apply, in a deterministic order."""
        options = self.options
        return build_objects(
            self.plan,
            options.translate,
            options.gateway_class,
            options.picker_tls,
            options.model_router,
            options.at_user_gateway,
        )

    def status(self, options: StatusOptions | None = None) -> list[dict]:
        """Status of the InferencePools and of the HTTPRoutes on Envoy Gateway's Gateways, with entries of
        controllerName poolgate.dev/envoy-gateway (other controllers' entries kept, stale ones of ours removed)."""
        reported = [
            s
            for s in compute_status(self.plan.status_graph(self.options.at_user_gateway), options)
            if s["kind"] in ("HTTPRoute", "InferencePool")
        ]
        return reported + [
            _without_our_entries(route.route) for route in self.plan.other_routes if _has_our_entries(route.route)
        ]

    def warnings(self) -> list[str]:
        """What a user should know: no Envoy Gateway Gateway, or routes whose every parentRef was refused."""
        if not self.plan.graph.gateways:
            return [f"no Gateway of a class with controllerName {self.options.controller_name}: nothing to generate"]
        return [
            f"{rp.route.route.ref}: no parentRef is accepted by an Envoy Gateway Gateway; see its status"
            for rp in self.plan.routes
            if not rp.parents
        ]


def translate_envoy_gateway(
    objects: Iterable[KubeObject], options: EnvoyGatewayOptions | None = None
) -> EnvoyGatewayTranslation:
    """Translate objects into Envoy Gateway resources for the Gateways of Envoy Gateway's class."""
    options = options or EnvoyGatewayOptions()
    graph = resolve(Snapshot.of(objects, options.controller_name), EG_PROTOCOLS)
    return EnvoyGatewayTranslation(plan(graph, options.translate), options)


def _has_our_entries(route) -> bool:
    return any(
        isinstance(p, dict) and p.get("controllerName") == STATUS_CONTROLLER
        for p in (route.status or {}).get("parents", [])
    )


def _without_our_entries(route) -> dict:
    parents = [
        p
        for p in route.status.get("parents", [])
        if isinstance(p, dict) and p.get("controllerName") != STATUS_CONTROLLER
    ]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": route.name, "namespace": route.namespace},
        "status": {"parents": parents},
    }


__all__ = [
    "EG_CONTROLLER",
    "STATUS_CONTROLLER",
    "CalloutService",
    "EnvoyGatewayOptions",
    "EnvoyGatewayTranslation",
    "translate_envoy_gateway",
]
