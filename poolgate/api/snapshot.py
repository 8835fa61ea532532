"""A Snapshot: a set of objects indexed the ways translator and picker look them up, and pool membership
(`pool_endpoints`: which pod ports serve an InferencePool)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from poolgate.api import (
    Gateway,
    GatewayClass,
    HTTPRoute,
    InferenceModelRewrite,
    InferenceObjective,
    InferencePool,
    KubeObject,
    Namespace,
    Pod,
    ReferenceGrant,
    Service,
)
from poolgate.api.contract import CONTROLLER_NAME
from poolgate.api.inference import ACTIVE_PORTS_ANNOTATIONS

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


@dataclass
class Snapshot:
    """The objects of one translation scope, by kind and (namespace, name)."""

    gateway_classes: dict[str, GatewayClass] = field(default_factory=dict)
    gateways: dict[Key, Gateway] = field(default_factory=dict)
    routes: dict[Key, HTTPRoute] = field(default_factory=dict)
    grants: dict[str, list[ReferenceGrant]] = field(default_factory=lambda: defaultdict(list))
    pools: dict[Key, InferencePool] = field(default_factory=dict)
    objectives: dict[Key, InferenceObjective] = field(default_factory=dict)
    rewrites: dict[Key, InferenceModelRewrite] = field(default_factory=dict)
    services: dict[Key, Service] = field(default_factory=dict)
    pods: dict[str, list[Pod]] = field(default_factory=lambda: defaultdict(list))
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    controller_name: str = CONTROLLER_NAME
    _pod_index: dict | None = field(default=None, repr=False)

    @classmethod
    def of(cls, objects: Iterable[KubeObject], controller_name: str = CONTROLLER_NAME) -> Snapshot:
        """Index the given objects (later duplicates of the same kind/namespace/name replace earlier ones)."""
        snap = cls(controller_name=controller_name)
        for obj in objects:
            key = (obj.namespace, obj.name)
            match obj:
                case GatewayClass():
                    snap.gateway_classes[obj.name] = obj
                case Gateway():
                    snap.gateways[key] = obj
                case HTTPRoute():
                    snap.routes[key] = obj
                case ReferenceGrant():
                    snap.grants[obj.namespace].append(obj)
                case InferencePool():
                    snap.pools[key] = obj
                case InferenceObjective():
                    snap.objectives[key] = obj
                case InferenceModelRewrite():
                    snap.rewrites[key] = obj
                case Service():
                    snap.services[key] = obj
                case Pod():
                    snap.pods[obj.namespace].append(obj)
                case Namespace():
                    snap.namespaces[obj.name] = obj
        return snap

    def is_ours(self, gateway: Gateway) -> bool:
        """Whether the Gateway's class is implemented by this controller."""
        gateway_class = self.gateway_classes.get(gateway.spec.gateway_class_name)
        return gateway_class is not None and gateway_class.spec.controller_name == self.controller_name

    def our_gateways(self) -> list[Gateway]:
        """This controller's Gateways, sorted by namespace/name."""
        return [gw for key, gw in sorted(self.gateways.items()) if self.is_ours(gw)]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """Labels of a namespace (with the well-known kubernetes.io/metadata.name label Kubernetes sets)."""
        ns = self.namespaces.get(namespace)
        labels = dict(ns.metadata.labels) if ns else {}
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return labels

    def grant_permits(
        self, from_kind: str, from_namespace: str, to_group: str, to_kind: str, to_namespace: str, to_name: str
    ) -> bool:
        """Whether a reference from a Gateway API object in `from_namespace` to an object in `to_namespace` is
        allowed: always within a namespace, across namespaces only with a ReferenceGrant in the target namespace."""
        if from_namespace == to_namespace:
            return True
        return any(
            grant.permits("gateway.networking.k8s.io", from_kind, from_namespace, to_group, to_kind, to_name)
            for grant in self.grants.get(to_namespace, ())
        )

    def pool_endpoints(self, pool: InferencePool) -> list[tuple[Pod, int]]:
        """The pool's endpoints: every ready pod of its namespace matching its selector, times each target port the
        pod serves (all, or those named by the active-ports annotation), sorted by pod name then port."""
        selector = pool.spec.selector.match_labels
        ports = [p.number for p in pool.spec.target_ports]
        by_label = self._ready_pods_by_label()
        candidates = min((by_label.get((pool.namespace, k, v), ()) for k, v in selector.items()), key=len)
        endpoints: list[tuple[Pod, int]] = []
        for pod in sorted(candidates, key=lambda p: p.name):
            if any(pod.metadata.labels.get(k) != v for k, v in selector.items()):
                continue
            active = _active_ports(pod)
            endpoints.extend((pod, port) for port in ports if active is None or port in active)
        return endpoints

    def service_endpoints(self, service: Service, port: int) -> list[tuple[Pod, int]]:
        """What a Service port reaches: every ready pod of its namespace matching its selector (none without one),
        at the port's numeric targetPort (the port itself when unset), sorted by pod name. A named targetPort is
        not resolved (no endpoints: callers use the Service's own address)."""
        service_port = service.port(port)
        selector = service.spec.selector
        if service_port is None or not selector or isinstance(service_port.target_port, str):
            return []
        target = service_port.target_port or port
        by_label = self._ready_pods_by_label()
        candidates = min((by_label.get((service.namespace, k, v), ()) for k, v in selector.items()), key=len)
        return [
            (pod, target)
            for pod in sorted(candidates, key=lambda p: p.name)
            if all(pod.metadata.labels.get(k) == v for k, v in selector.items())
        ]

    def _ready_pods_by_label(self) -> dict[tuple[str, str, str], list[Pod]]:
        """Ready pods indexed by (namespace, label key, label value), built once per snapshot."""
        if self._pod_index is None:
            index: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
            for namespace, pods in self.pods.items():
                for pod in pods:
                    if pod.ready:
                        for key, value in pod.metadata.labels.items():
                            index[(namespace, key, value)].append(pod)
            self._pod_index = index
        return self._pod_index


def _active_ports(pod: Pod) -> set[int] | None:
    annotations = pod.metadata.annotations
    value = next((annotations[name] for name in ACTIVE_PORTS_ANNOTATIONS if name in annotations), None)
    if value is None:
        return None
    return {int(part) for part in value.split(",") if part.strip().isdigit()}
