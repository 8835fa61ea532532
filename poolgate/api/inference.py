"""Gateway API Inference Extension objects: InferencePool (inference.networking.k8s.io/v1), and InferenceObjective and
InferenceModelRewrite (inference.networking.x-k8s.io/v1alpha2 and llm-d.ai/v1alpha2, the same schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from poolgate.api.base import (
    GATEWAY_GROUP,
    INFERENCE_GROUP,
    ApiModel,
    Condition,
    Conditions,
    ControllerName,
    Group,
    Int32,
    Kind,
    KubeObject,
    LabelValue,
    Namespace,
    ObjectName,
    PortNumber,
    cel_rules,
    list_type,
)

# Pod annotations listing the target ports a pod actually serves (comma-separated, a subset of the pool's
# targetPorts): llm-d's current name first, then the GIE name it replaced.
ACTIVE_PORTS_ANNOTATIONS = ("llm-d.ai/active-ports", "inference.networking.k8s.io/active-ports")
OBJECTIVE_API_VERSIONS = ("inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2")
ObjectiveApiVersion = Literal["inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2"]


class Port(ApiModel):
    number: PortNumber


class PoolSelector(ApiModel):
    match_labels: Annotated[
        dict[Annotated[str, StringConstraints(min_length=1)], LabelValue], Field(min_length=1, max_length=64)
    ]


class EndpointPickerRef(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.kind != 'Service' || has(self.port)",
                "port is required when kind is 'Service' or unspecified (defaults to 'Service')",
            )
        )
    )

    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    port: Port | None = None
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"

    @model_validator(mode="after")
    def _port_for_service(self) -> EndpointPickerRef:
        if self.kind == "Service" and self.port is None:
            raise ValueError("port: port is required when kind is 'Service' or unspecified (defaults to 'Service')")
        return self


class InferencePoolSpec(ApiModel):
    selector: PoolSelector
    target_ports: Annotated[
        list[Port],
        Field(
            min_length=1,
            max_length=8,
            json_schema_extra={
                **list_type("atomic"),
                **cel_rules(("self.all(p1, self.exists_one(p2, p1.number==p2.number))", "port number must be unique")),
            },
        ),
    ]
    app_protocol: Literal["http", "kubernetes.io/h2c"] = "http"
    endpoint_picker_ref: EndpointPickerRef | None = None

    @model_validator(mode="after")
    def _unique_ports(self) -> InferencePoolSpec:
        numbers = [p.number for p in self.target_ports]
        if len(numbers) != len(set(numbers)):
            raise ValueError("targetPorts: port number must be unique")
        return self


class ParentGatewayReference(ApiModel):
    group: Group = GATEWAY_GROUP
    kind: Kind = "Gateway"
    name: ObjectName
    namespace: Namespace | None = None


class PoolParentStatus(ApiModel):
    parent_ref: ParentGatewayReference
    controller_name: ControllerName | None = None
    conditions: Conditions = Field(default_factory=list)


class InferencePoolStatus(ApiModel):
    parents: Annotated[list[PoolParentStatus], Field(max_length=32, json_schema_extra=list_type("atomic"))] = Field(
        default_factory=list
    )


class InferencePool(KubeObject):
    """An InferencePool: model-server pods (selector x targetPorts) and the endpoint picker that chooses among them."""

    api_version: Literal["inference.networking.k8s.io/v1"]
    kind: Literal["InferencePool"] = "InferencePool"
    spec: InferencePoolSpec
    status: InferencePoolStatus = Field(default_factory=InferencePoolStatus)


class PoolReference(ApiModel):
    group: Group = INFERENCE_GROUP
    kind: Kind = "InferencePool"
    name: ObjectName


class InferenceObjectiveSpec(ApiModel):
    priority: Int32 | None = None
    pool_ref: PoolReference


def pending(condition_type: str) -> Condition:
    """The condition the API server gives a new InferenceObjective / InferenceModelRewrite until a controller acts."""
    return Condition(
        type=condition_type,
        status="Unknown",
        reason="Pending",
        message="Waiting for controller",
        last_transition_time="1970-01-01T00:00:00Z",
    )


class InferenceObjectiveStatus(ApiModel):
    conditions: Conditions = [pending("Ready")]


class InferenceObjective(KubeObject):
    """An InferenceObjective: a priority for requests that name it (header x-gateway-inference-objective)."""

    api_version: ObjectiveApiVersion
    kind: Literal["InferenceObjective"] = "InferenceObjective"
    spec: InferenceObjectiveSpec
    status: InferenceObjectiveStatus = Field(default_factory=InferenceObjectiveStatus)


class ModelMatch(ApiModel):
    type: Literal["Exact"] = "Exact"
    value: Annotated[str, StringConstraints(min_length=1)]


class RewriteMatch(ApiModel):
    model: ModelMatch


class RewriteTarget(ApiModel):
    model_rewrite: str
    weight: Annotated[int, Field(ge=1, le=1_000_000, json_schema_extra={"format": "int32"})] | None = None


class RewriteRule(ApiModel):
    matches: list[RewriteMatch] = Field(default_factory=list)
    targets: Annotated[list[RewriteTarget], Field(min_length=1)]

    @model_validator(mode="after")
    def _weights_all_or_none(self) -> RewriteRule:
        weighted = [t.weight is not None for t in self.targets]
        if any(weighted) and not all(weighted):
            raise ValueError("targets: weight must be set on all targets or on none")
        return self


class InferenceModelRewriteSpec(ApiModel):
    pool_ref: PoolReference
    rules: list[RewriteRule]


class InferenceModelRewriteStatus(ApiModel):
    conditions: Conditions = [pending("Accepted")]


class InferenceModelRewrite(KubeObject):
    """An InferenceModelRewrite: rewrites the requested model name to weighted targets (canaries, aliases)."""

    api_version: ObjectiveApiVersion
    kind: Literal["InferenceModelRewrite"] = "InferenceModelRewrite"
    spec: InferenceModelRewriteSpec
    status: InferenceModelRewriteStatus = Field(default_factory=InferenceModelRewriteStatus)
