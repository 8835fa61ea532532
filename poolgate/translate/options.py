"""Knobs of a translation: where endpoints come from, how the picker is called, where listeners bind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from poolgate.translate.ir import Address


@dataclass(frozen=True)
class TranslateOptions:
    """How to translate. `static` endpoints come from the Pods in the input (standalone); `dns` endpoints come
    from the headless Service poolgate creates per pool and Envoy resolves (Kubernetes)."""

    endpoints: Literal["static", "dns"] = "static"
    cluster_domain: str = "cluster.local"
    listener_address: str = "0.0.0.0"
    bind_addresses: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, gateway) -> bind address
    admin_address: Address = Address("127.0.0.1", 19000)
    model_router: Address = Address("127.0.0.1", 9004)
    body_mode: Literal["FULL_DUPLEX_STREAMED", "BUFFERED"] = "FULL_DUPLEX_STREAMED"
    buffer_limit_bytes: int = 32 * 1024 * 1024
    picker_timeout_s: float = 10.0
    # TLS to the pickers (`poolgate picker --secure-serving`). Without `picker_ca` the connection is encrypted but
    # the picker's certificate is not checked (its self-signed default changes on every start, as upstream's does);
    # with `picker_ca` (a PEM bundle file Envoy reads) the certificate must chain to it and name the picker Service:
    # DNS SAN <service>.<namespace>.svc.<cluster domain> or <service>.<namespace>.svc. SNI is the first of those.
    picker_tls: bool = True  # upstream pickers (and `poolgate picker`) serve TLS unless --secure-serving=false
    picker_ca: str | None = None
    # Whether every pool's picker is poolgate's own (`poolgate up` runs them). A poolgate picker that does not edit
    # responses gets each response on a separate observe-only call, so a response that has started never waits for
    # it or fails with it (see policy.decide). `picker_edits_responses`: the pickers add response headers (the
    # session-affinity-scorer's token, conformance steering's reports), so the response stays on the picking call.
    poolgate_pickers: bool = False
    picker_edits_responses: bool = False
    # Kubernetes through the hooks: the pickers of managed pools (annotation poolgate.dev/managed-picker: "true") are
    # poolgate's, deployed with this many replicas each, and observe responses by the same rule; other pools' pickers
    # may be upstream's. None: the translation does not know who runs managed pickers (`poolgate translate`).
    managed_picker_replicas: int | None = None
    retries: int = 2  # retries on the picker's fallback endpoints (connect failures / resets only)
    connect_timeout_s: float = 2.0
    # A client must send its request headers within `request_headers_timeout_s` and its whole request within
    # `request_timeout_s` (Envoy answers 408), so a client trickling its request (slow loris) cannot hold a
    # connection, a picker stream and a buffered body for ever. Streaming the response is not limited by these.
    request_headers_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    # Envoy resets a request after this long without a byte either way (0: never). Envoy's default of 5 minutes
    # would cut a non-streaming generation that runs longer, or a request queued that long at a saturated pool;
    # an hour still frees connections whose peer vanished.
    stream_idle_timeout_s: float = 3600.0

    def bind_address(self, namespace: str, gateway: str) -> str:
        return self.bind_addresses.get((namespace, gateway), self.listener_address)
