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
    bind_addresses: dict[tuple[str, str], str] = field(default_factory=dict)   # (ns, gateway) -> bind address
    admin_address: Address = Address("127.0.0.1", 19000)
    model_router: Address = Address("127.0.0.1", 9004)
    body_mode: Literal["FULL_DUPLEX_STREAMED", "BUFFERED"] = "FULL_DUPLEX_STREAMED"
    buffer_limit_bytes: int = 32 * 1024 * 1024
    picker_timeout_s: float = 10.0
    picker_tls: bool = False
    retries: int = 2           # retries on the picker's fallback endpoints (connect failures / resets only)
    connect_timeout_s: float = 2.0

    def bind_address(self, namespace: str, gateway: str) -> str:
        return self.bind_addresses.get((namespace, gateway), self.listener_address)
