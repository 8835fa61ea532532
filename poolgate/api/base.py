"""Shared building blocks of the API models: the model base class, object metadata, conditions, common field types."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

# Field types with the constraints the Kubernetes / Gateway API schemas impose.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Namespace = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Group = Annotated[str, StringConstraints(max_length=253, pattern=r"^$|" + DNS_SUBDOMAIN)]
Kind = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")]
SectionName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=HOSTNAME)]
PreciseHostname = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
PortNumber = Annotated[int, Field(ge=1, le=65535, json_schema_extra={"format": "int32"})]
# A Go int32: Kubernetes' schema check does not range-check `format: int32`, poolgate does.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1), WithJsonSchema({"type": "integer", "format": "int32"})]
HeaderName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")]
Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")]
DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
ControllerName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$",
    ),
]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
ConditionStatus = Literal["True", "False", "Unknown"]
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def duration_seconds(duration: str) -> float:
    """The length of a Gateway API Duration (e.g. "1m30s", "500ms") in seconds."""
    return sum(float(n) * DURATION_UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|h|m|s)", duration))


def _rfc3339(value: str) -> str:
    if not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-01-01T00:00:00Z")
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # a ValueError for impossible dates
    return value


Timestamp = Annotated[str, AfterValidator(_rfc3339), WithJsonSchema({"type": "string", "format": "date-time"})]


def unique(*keys: str) -> AfterValidator:
    """A list check: no two items share the values of `keys` (no two equal items without keys), as Kubernetes
    enforces for lists of type `map` (`x-kubernetes-list-map-keys`) and `set`."""

    def check(items: list) -> list:
        seen = [tuple(getattr(item, k) for k in keys) if keys else item for item in items]
        duplicate = next((s for s in seen if seen.count(s) > 1), None)
        if duplicate is not None:
            raise ValueError(f"Duplicate value: {duplicate if not keys else ', '.join(map(str, duplicate))}")
        return items

    return AfterValidator(check)


def cel_rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """JSON-schema extra for the generated CRDs: CEL rules (rule, message) that the API server checks. The model
    checks the same rule in Python; both are written side by side."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


def list_type(kind: Literal["atomic", "set", "map"], *keys: str) -> dict[str, Any]:
    """JSON-schema extra for the generated CRDs: how the API server merges a list (`map` lists are keyed by `keys`)."""
    return {"x-kubernetes-list-type": kind, **({"x-kubernetes-list-map-keys": list(keys)} if keys else {})}


GATEWAY_GROUP = "gateway.networking.k8s.io"
INFERENCE_GROUP = "inference.networking.k8s.io"


class ApiModel(BaseModel):
    """Base of every API model: camelCase JSON names, snake_case attributes, unknown fields ignored (as the API
    server's structural pruning does), JSON types taken as they are (no "8000" for 8000), immutable once loaded."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True, strict=True)

    def to_json(self) -> dict:
        """Return the object as Kubernetes JSON (camelCase keys, unset optional fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OwnerReference(ApiModel):
    api_version: str
    kind: str
    name: str
    uid: str = ""
    controller: bool | None = None


class ObjectMeta(ApiModel):
    """The part of Kubernetes object metadata that poolgate reads."""

    name: ObjectName
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)


class Condition(ApiModel):
    """A metav1.Condition as written in status."""

    type: Annotated[
        str,
        StringConstraints(
            max_length=316,
            pattern=(
                r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
            ),
        ),
    ]
    status: ConditionStatus
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    message: Annotated[str, StringConstraints(max_length=32768)]
    observed_generation: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = None
    last_transition_time: Timestamp


# A status conditions list: at most 8, one per type.
Conditions = Annotated[list[Condition], Field(max_length=8, json_schema_extra=list_type("map", "type")), unique("type")]


class LabelSelectorRequirement(ApiModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    """A metav1.LabelSelector; `matches` tells whether a label set is selected."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether `labels` satisfies every matchLabels entry and every matchExpressions requirement."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and not (present and labels[req.key] in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class KubeObject(ApiModel):
    """Common shape of a Kubernetes object: apiVersion, kind, metadata."""

    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def generation(self) -> int:
        return self.metadata.generation or 0

    @property
    def ref(self) -> str:
        """`Kind namespace/name`, the way poolgate names an object in messages."""
        return f"{self.kind} {self.namespace}/{self.name}"
