"""Kubernetes core objects poolgate reads: Pods (pool members), Services (pickers and backends), Namespaces."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poolgate.api.base import ApiModel, KubeObject


class PodCondition(ApiModel):
    type: str
    status: str


class PodIP(ApiModel):
    ip: str


class PodStatus(ApiModel):
    phase: str | None = None
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] = Field(default_factory=list, alias="podIPs")
    conditions: list[PodCondition] = Field(default_factory=list)


class Pod(KubeObject):
    """A Pod: labels for pool selection, readiness and podIP for endpoints."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    spec: dict = Field(default_factory=dict)
    status: PodStatus = Field(default_factory=PodStatus)

    @property
    def ready(self) -> bool:
        """Not terminating, with an IP and the Ready condition True (the upstream picker's rule)."""
        if self.metadata.deletion_timestamp or not self.status.pod_ip:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in self.status.conditions)


class ServicePort(ApiModel):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


class ServiceSpec(ApiModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(default_factory=list)
    external_name: str | None = None


class Service(KubeObject):
    """A Service: the endpoint picker behind endpointPickerRef, or a plain HTTPRoute backend."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)

    def port(self, number: int) -> ServicePort | None:
        """The Service port with this port number, or None."""
        return next((p for p in self.spec.ports if p.port == number), None)


class Namespace(KubeObject):
    """A Namespace: its labels decide `allowedRoutes.namespaces.from: Selector`."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["Namespace"] = "Namespace"

    @property
    def namespace(self) -> str:
        return ""

    @property
    def ref(self) -> str:
        return f"Namespace {self.name}"


class ContainerPort(ApiModel):
    container_port: int = Field(ge=1, le=65535)
    name: str | None = None


class Container(ApiModel):
    name: str
    image: str = ""
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)


class PodTemplateMeta(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodSpec(ApiModel):
    containers: list[Container] = Field(default_factory=list)


class PodTemplate(ApiModel):
    metadata: PodTemplateMeta = Field(default_factory=PodTemplateMeta)
    spec: PodSpec = Field(default_factory=PodSpec)


class DeploymentSpec(ApiModel):
    replicas: int = Field(default=1, ge=0)
    template: PodTemplate = Field(default_factory=PodTemplate)


class Deployment(KubeObject):
    """A Deployment: `poolgate up` runs the replicas of one whose container is `poolgate sim` as simulated pods."""

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec = Field(default_factory=DeploymentSpec)
