"""The intermediate representation between resolved Gateway API objects and Envoy: listeners, virtual hosts,
routes and clusters, with nothing Kubernetes-specific left and nothing Envoy-specific yet. Reliability settings are the decisions of
`policy.decide`, carried where they apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from poolgate.translate.answers import EdgeError
from poolgate.translate.policy import CalloutPolicy, CircuitLimits, ClientTimeouts, RequestLimits, RetryPolicy


@dataclass(frozen=True)
class Address:
    host: str  # an IP address (static endpoints) or a DNS name (resolved by Envoy)
    port: int


@dataclass(frozen=True)
class Cluster:
    """An upstream cluster: a pool's endpoints, a Service, or an endpoint picker."""

    name: str
    role: Literal["pool", "service", "picker", "model-router"]
    addresses: tuple[Address, ...]
    limits: CircuitLimits
    dns: bool = False  # resolve `addresses` by DNS (STRICT_DNS) instead of using them as IPs
    http2: bool = False  # HTTP/2 with prior knowledge (h2c); pickers always
    override_host: bool = False  # honour the picker's x-gateway-destination-endpoint (pools with a picker)
    tls: bool = False  # TLS to the upstream (pickers with --secure-serving)
    server_name: str = ""  # with tls: the name sent as SNI and checked in the certificate (if validated)


@dataclass(frozen=True)
class PickerCall:
    """How a route's requests consult a pool's endpoint picker."""

    cluster: str
    pool: str  # "namespace/name", sent to the picker as gRPC initial metadata
    policy: CalloutPolicy  # for the pool's failure mode
    observer: CalloutPolicy | None = (
        None  # the response's own observe-only call, when `policy` covers the request alone
    )


@dataclass(frozen=True)
class HeaderMods:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True)
class Backend:
    """A weighted destination of a route; `cluster` None means the backend is invalid (requests get 500)."""

    cluster: str | None
    weight: int
    picker: PickerCall | None = None
    request_headers: HeaderMods = HeaderMods()
    response_headers: HeaderMods = HeaderMods()


@dataclass(frozen=True)
class Match:
    path_type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    path: str = "/"
    headers: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)
    query_params: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)
    method: str | None = None


@dataclass(frozen=True)
class Forward:
    backends: tuple[Backend, ...]
    timeout_s: float  # 0 = no route timeout
    per_try_timeout_s: float = 0.0
    retry: RetryPolicy | None = None  # retries on the picker's fallbacks (routes to pools with a picker)
    host_rewrite: str | None = None
    path_rewrite: tuple[str, str] | None = None  # ("ReplaceFullPath" | "ReplacePrefixMatch", value)


@dataclass(frozen=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path_rewrite: tuple[str, str] | None = None
    status_code: int = 302


@dataclass(frozen=True)
class DirectResponse:
    status: int
    body: str


@dataclass(frozen=True)
class Route:
    name: str
    match: Match
    action: Forward | Redirect | DirectResponse
    request_headers: HeaderMods = HeaderMods()
    response_headers: HeaderMods = HeaderMods()


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class ModelSource:
    """Where the model servers of one pool answer `GET /v1/models` (tried in order until one answers), and the
    names the pool's InferenceModelRewrites accept."""

    pool: str  # namespace/name
    addresses: tuple[Address, ...]
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ModelList:
    """What the model router composes `GET /v1/models` from: the listener's pools."""

    sources: tuple[ModelSource, ...]


@dataclass(frozen=True)
class Listener:
    """One Envoy listener: a Gateway's HTTP listeners that share a port."""

    name: str
    gateway_namespace: str
    gateway_name: str
    port: int
    virtual_hosts: tuple[VirtualHost, ...]
    client_timeouts: ClientTimeouts
    request_limits: RequestLimits
    edge_errors: tuple[EdgeError, ...]  # the answers Envoy gives itself, rewritten as OpenAI-style JSON errors
    model_router: CalloutPolicy | None = None  # run the body-based model router (sets X-Gateway-Model-Name) first
    model_list: ModelList | None = None  # with the model router: what it answers `GET /v1/models` with
    endpoint_picker: CalloutPolicy | None = None  # the picker filter's own configuration, when a route calls one
    response_observer: CalloutPolicy | None = None  # the observer filter's own configuration, when a route has one


@dataclass
class IR:
    listeners: list[Listener] = field(default_factory=list)
    clusters: dict[str, Cluster] = field(default_factory=dict)
