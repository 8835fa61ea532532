"""Gateway API objects (gateway.networking.k8s.io/v1): GatewayClass, Gateway, HTTPRoute, ReferenceGrant."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from poolgate.api.base import (
    GATEWAY_GROUP,
    HOSTNAME,
    ApiModel,
    ControllerName,
    Duration,
    Group,
    HeaderName,
    Hostname,
    Kind,
    KubeObject,
    LabelSelector,
    Namespace,
    ObjectName,
    PortNumber,
    PreciseHostname,
    SectionName,
    duration_seconds,
    unique,
)

GatewayApiVersion = Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


# --- GatewayClass -------------------------------------------------------------------------------------------------


class ParametersReference(ApiModel):
    group: Group
    kind: Kind
    name: ObjectName
    namespace: Namespace | None = None


class GatewayClassSpec(ApiModel):
    controller_name: ControllerName
    parameters_ref: ParametersReference | None = None
    description: Annotated[str, StringConstraints(max_length=64)] | None = None


class GatewayClass(KubeObject):
    """A GatewayClass: names the controller that implements its Gateways (cluster-scoped)."""

    api_version: GatewayApiVersion
    kind: Literal["GatewayClass"] = "GatewayClass"
    spec: GatewayClassSpec
    status: dict[str, Any] = Field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return ""

    @property
    def ref(self) -> str:
        return f"GatewayClass {self.name}"


# --- Gateway ------------------------------------------------------------------------------------------------------


class RouteNamespaces(ApiModel):
    from_: Literal["All", "Selector", "Same"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(ApiModel):
    group: Group = GATEWAY_GROUP
    kind: Kind


class AllowedRoutes(ApiModel):
    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: Annotated[list[RouteGroupKind], Field(max_length=8)] = Field(default_factory=list)


class SecretObjectReference(ApiModel):
    group: Group = ""
    kind: Kind = "Secret"
    name: ObjectName
    namespace: Namespace | None = None


class ListenerTLS(ApiModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: Annotated[list[SecretObjectReference], Field(max_length=64)] = Field(default_factory=list)
    options: Annotated[dict[str, Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=16)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _terminate_has_certificates(self) -> ListenerTLS:
        if self.mode == "Terminate" and not self.certificate_refs and not self.options:
            raise ValueError("certificateRefs or options must be specified when mode is Terminate")
        return self


class Listener(ApiModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: Annotated[
        str,
        StringConstraints(
            min_length=1,
            max_length=255,
            pattern=(
                r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|"
                r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$"
            ),
        ),
    ]
    tls: ListenerTLS | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes)


class GatewayAddress(ApiModel):
    type: Annotated[
        str,
        StringConstraints(
            min_length=1,
            max_length=253,
            pattern=(
                r"^Hostname|IPAddress|NamedAddress|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/"
                r"[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
            ),
        ),
    ] = "IPAddress"
    value: Annotated[str, StringConstraints(max_length=253)] | None = None

    @model_validator(mode="after")
    def _value_fits_type(self) -> GatewayAddress:
        if self.value is not None and self.type == "IPAddress":
            try:
                ipaddress.ip_address(self.value)
            except ValueError:
                raise ValueError("value: an IPAddress value must be an IPv4 or IPv6 address") from None
        if self.value is not None and self.type == "Hostname" and not re.match(HOSTNAME, self.value):
            raise ValueError(
                f"value: Hostname value must be empty or contain only valid characters (matching {HOSTNAME})"
            )
        return self


class GatewaySpec(ApiModel):
    gateway_class_name: ObjectName
    listeners: Annotated[list[Listener], Field(min_length=1, max_length=64)]
    addresses: Annotated[list[GatewayAddress], Field(max_length=16)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_listeners(self) -> GatewaySpec:
        names = [listener.name for listener in self.listeners]
        if len(names) != len(set(names)):
            raise ValueError("listeners: Listener name must be unique within the Gateway")
        combos = [(lst.port, lst.protocol, lst.hostname or "") for lst in self.listeners]
        if len(combos) != len(set(combos)):
            raise ValueError("listeners: Combination of port, protocol and hostname must be unique for each listener")
        for i, listener in enumerate(self.listeners):
            if listener.protocol in ("TCP", "UDP") and listener.hostname:
                raise ValueError(
                    f"listeners[{i}].hostname: hostname must not be specified for protocols ['TCP', 'UDP']"
                )
            if listener.protocol in ("HTTP", "TCP", "UDP") and listener.tls is not None:
                raise ValueError(f"listeners[{i}].tls: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")
            if listener.protocol == "HTTPS" and listener.tls is not None and listener.tls.mode != "Terminate":
                raise ValueError(f"listeners[{i}].tls: tls mode must be Terminate for protocol HTTPS")
            if listener.protocol == "TLS" and listener.tls is None:
                raise ValueError(f"listeners[{i}].tls: tls mode must be set for protocol TLS")
        for address_type in ("IPAddress", "Hostname"):
            values = [a.value for a in self.addresses if a.type == address_type and a.value is not None]
            if len(values) != len(set(values)):
                raise ValueError(f"addresses: {address_type} values must be unique")
        return self


class Gateway(KubeObject):
    """A Gateway: listeners (port, protocol, hostname) that routes attach to."""

    api_version: GatewayApiVersion
    kind: Literal["Gateway"] = "Gateway"
    spec: GatewaySpec
    status: dict[str, Any] = Field(default_factory=dict)


# --- HTTPRoute ----------------------------------------------------------------------------------------------------


class ParentReference(ApiModel):
    group: Group = GATEWAY_GROUP
    kind: Kind = "Gateway"
    namespace: Namespace | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None


PATH_CHARACTERS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


class PathMatch(ApiModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, StringConstraints(max_length=1024)] = "/"

    @model_validator(mode="after")
    def _valid_path(self) -> PathMatch:
        if self.type in ("Exact", "PathPrefix"):
            if not self.value.startswith("/"):
                raise ValueError(
                    "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"
                )
            for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
                if bad in self.value:
                    raise ValueError(f"value must not contain '{bad}' when type one of ['Exact', 'PathPrefix']")
            if self.value.endswith(("/..", "/.")):
                raise ValueError("value must not end with '/..' or '/.' when type one of ['Exact', 'PathPrefix']")
            if not PATH_CHARACTERS.match(self.value):
                raise ValueError(
                    f"value must only contain valid characters (matching {PATH_CHARACTERS.pattern}) "
                    "for types ['Exact', 'PathPrefix']"
                )
        return self


class HeaderMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class QueryParamMatch(ApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class RouteMatch(ApiModel):
    path: PathMatch = Field(default_factory=PathMatch)
    headers: Annotated[list[HeaderMatch], Field(max_length=16), unique("name")] = Field(default_factory=list)
    query_params: Annotated[list[QueryParamMatch], Field(max_length=16), unique("name")] = Field(default_factory=list)
    method: HttpMethod | None = None


class HeaderValue(ApiModel):
    name: HeaderName
    value: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class HeaderModifier(ApiModel):
    set: Annotated[list[HeaderValue], Field(max_length=16), unique("name")] = Field(default_factory=list)
    add: Annotated[list[HeaderValue], Field(max_length=16), unique("name")] = Field(default_factory=list)
    remove: Annotated[list[str], Field(max_length=16), unique()] = Field(default_factory=list)


class PathModifier(ApiModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: Annotated[str, StringConstraints(max_length=1024)] | None = None
    replace_prefix_match: Annotated[str, StringConstraints(max_length=1024)] | None = None

    @model_validator(mode="after")
    def _matching_field(self) -> PathModifier:
        if (self.type == "ReplaceFullPath") != (self.replace_full_path is not None):
            raise ValueError("replaceFullPath must be specified when type is set to 'ReplaceFullPath', and only then")
        if (self.type == "ReplacePrefixMatch") != (self.replace_prefix_match is not None):
            raise ValueError(
                "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch', and only then"
            )
        return self


class URLRewrite(ApiModel):
    hostname: PreciseHostname | None = None
    path: PathModifier | None = None


class RequestRedirect(ApiModel):
    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: PathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class BackendObjectReference(ApiModel):
    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    namespace: Namespace | None = None
    port: PortNumber | None = None

    @model_validator(mode="after")
    def _service_port(self) -> BackendObjectReference:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("port: Must have port for Service reference")
        return self


class Fraction(ApiModel):
    numerator: Annotated[int, Field(ge=0)]
    denominator: Annotated[int, Field(ge=1)] = 100

    @model_validator(mode="after")
    def _at_most_one(self) -> Fraction:
        if self.numerator > self.denominator:
            raise ValueError("numerator must be less than or equal to denominator")
        return self


class RequestMirror(ApiModel):
    backend_ref: BackendObjectReference
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None

    @model_validator(mode="after")
    def _percent_or_fraction(self) -> RequestMirror:
        if self.percent is not None and self.fraction is not None:
            raise ValueError("Only one of percent or fraction may be specified in HTTPRequestMirrorFilter")
        return self


class LocalObjectReference(ApiModel):
    group: Group
    kind: Kind
    name: ObjectName


FILTER_FIELDS = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "ExtensionRef": "extension_ref",
    "CORS": "cors",
}


class RouteFilter(ApiModel):
    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
        "CORS",
    ]
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_mirror: RequestMirror | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = Field(default=None, alias="urlRewrite")
    extension_ref: LocalObjectReference | None = None
    cors: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _config_matches_type(self) -> RouteFilter:
        for filter_type, field in FILTER_FIELDS.items():
            alias = RouteFilter.model_fields[field].alias
            if getattr(self, field) is not None and self.type != filter_type:
                raise ValueError(f"filter.{alias} must be nil if the filter.type is not {filter_type}")
            if getattr(self, field) is None and self.type == filter_type:
                raise ValueError(f"filter.{alias} must be specified for {filter_type} filter.type")
        return self


def _check_filter_list(filters: list[RouteFilter]) -> None:
    types = [f.type for f in filters]
    if "RequestRedirect" in types and "URLRewrite" in types:
        raise ValueError(
            "filters: May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both"
        )
    for once in ("CORS", "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
        if types.count(once) > 1:
            raise ValueError(f"filters: {once} filter cannot be repeated")


class BackendRef(BackendObjectReference):
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    filters: Annotated[list[RouteFilter], Field(max_length=16)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _filters(self) -> BackendRef:
        _check_filter_list(self.filters)
        return self


class RouteTimeouts(ApiModel):
    request: Duration | None = None
    backend_request: Duration | None = None

    @model_validator(mode="after")
    def _backend_within_request(self) -> RouteTimeouts:
        if (
            self.request is not None
            and self.backend_request is not None
            and duration_seconds(self.request) != 0
            and duration_seconds(self.backend_request) > duration_seconds(self.request)
        ):
            raise ValueError("backendRequest timeout cannot be longer than request timeout")
        return self


def _replaces_prefix(route_filter: RouteFilter) -> bool:
    """Whether a filter rewrites or redirects by replacing the matched path prefix."""
    config = route_filter.url_rewrite or route_filter.request_redirect
    return config is not None and config.path is not None and config.path.type == "ReplacePrefixMatch"


def _default_matches() -> list[RouteMatch]:
    return [RouteMatch()]


class RouteRule(ApiModel):
    name: SectionName | None = None
    matches: Annotated[list[RouteMatch], Field(max_length=64)] = Field(default_factory=_default_matches)
    filters: Annotated[list[RouteFilter], Field(max_length=16)] = Field(default_factory=list)
    backend_refs: Annotated[list[BackendRef], Field(max_length=16)] = Field(default_factory=list)
    timeouts: RouteTimeouts | None = None

    @model_validator(mode="after")
    def _rule_constraints(self) -> RouteRule:
        _check_filter_list(self.filters)
        if self.backend_refs and any(f.type == "RequestRedirect" for f in self.filters):
            raise ValueError("RequestRedirect filter must not be used together with backendRefs")
        filters = self.filters + [f for backend in self.backend_refs for f in backend.filters]
        one_prefix_match = len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix"
        if any(_replaces_prefix(f) for f in filters) and not one_prefix_match:
            raise ValueError(
                "When using a URLRewrite or RequestRedirect filter with path.replacePrefixMatch, "
                "exactly one PathPrefix match must be specified"
            )
        return self


def _default_rules() -> list[RouteRule]:
    return [RouteRule()]


class HTTPRouteSpec(ApiModel):
    parent_refs: Annotated[list[ParentReference], Field(max_length=32)] = Field(default_factory=list)
    hostnames: Annotated[list[Hostname], Field(max_length=16)] = Field(default_factory=list)
    rules: Annotated[list[RouteRule], Field(min_length=1, max_length=16)] = Field(default_factory=_default_rules)

    @model_validator(mode="after")
    def _route_constraints(self) -> HTTPRouteSpec:
        if sum(len(rule.matches) for rule in self.rules) > 128:
            raise ValueError(
                "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128"
            )
        names = [rule.name for rule in self.rules if rule.name]
        if len(names) != len(set(names)):
            raise ValueError("rules: Rule name must be unique within the route")
        parents = [((p.group, p.kind, p.name, p.namespace or ""), p.section_name or "") for p in self.parent_refs]
        for parent, section in parents:
            if any(other == parent and bool(other_section) != bool(section) for other, other_section in parents):
                raise ValueError(
                    "parentRefs: sectionName must be specified when parentRefs includes 2 or more "
                    "references to the same parent"
                )
        if len(parents) != len(set(parents)):
            raise ValueError(
                "parentRefs: sectionName must be unique when parentRefs includes 2 or more references "
                "to the same parent"
            )
        return self


class HTTPRoute(KubeObject):
    """An HTTPRoute: matches requests on its parents' listeners and forwards them to backends (pools or Services)."""

    api_version: GatewayApiVersion
    kind: Literal["HTTPRoute"] = "HTTPRoute"
    spec: HTTPRouteSpec
    status: dict[str, Any] = Field(default_factory=dict)


# --- ReferenceGrant -----------------------------------------------------------------------------------------------


class ReferenceGrantFrom(ApiModel):
    group: Group
    kind: Kind
    namespace: Namespace


class ReferenceGrantTo(ApiModel):
    group: Group
    kind: Kind
    name: ObjectName | None = None


class ReferenceGrantSpec(ApiModel):
    from_: Annotated[list[ReferenceGrantFrom], Field(min_length=1, max_length=16)] = Field(alias="from")
    to: Annotated[list[ReferenceGrantTo], Field(min_length=1, max_length=16)]


class ReferenceGrant(KubeObject):
    """A ReferenceGrant: lets objects of other namespaces reference objects in this one."""

    api_version: GatewayApiVersion
    kind: Literal["ReferenceGrant"] = "ReferenceGrant"
    spec: ReferenceGrantSpec

    def permits(
        self, from_group: str, from_kind: str, from_namespace: str, to_group: str, to_kind: str, to_name: str
    ) -> bool:
        """Whether this grant allows a `from_kind` in `from_namespace` to reference `to_kind/to_name` here."""
        return any(
            f.group == from_group and f.kind == from_kind and f.namespace == from_namespace for f in self.spec.from_
        ) and any(t.group == to_group and t.kind == to_kind and t.name in (None, to_name) for t in self.spec.to)
