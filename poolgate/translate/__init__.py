"""Translation of Gateway API + Inference Extension objects into Envoy configuration and status.

One direction, each stage a pure function testable alone:
objects -> Snapshot (index) -> Graph (resolve) -> IR (lower) -> Envoy JSON (xds); Graph -> status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from poolgate.api import KubeObject
from poolgate.api.contract import CONTROLLER_NAME
from poolgate.api.snapshot import Snapshot
from poolgate.translate import xds
from poolgate.translate.ir import IR
from poolgate.translate.lower import lower
from poolgate.translate.options import TranslateOptions
from poolgate.translate.resolve import Graph, resolve
from poolgate.translate.status import GatewayRuntime, StatusOptions, compute_status


@dataclass
class Translation:
    """The result of translating one set of objects: the resolved graph, the IR, and the options used."""

    graph: Graph
    ir: IR
    options: TranslateOptions

    def bootstrap(self) -> dict:
        """A complete standalone Envoy bootstrap."""
        return xds.bootstrap(self.ir, self.options)

    def discovery_files(self) -> dict[str, dict]:
        """lds.yaml and cds.yaml contents for file-based dynamic resources."""
        return xds.discovery_files(self.ir, self.options)

    def status(self, options: StatusOptions | None = None) -> list[dict]:
        """Status objects for this controller's GatewayClasses, Gateways, HTTPRoutes and InferencePools."""
        return compute_status(self.graph, options)

    def bind_conflicts(self) -> list[str]:
        """Messages for Envoy listeners of different Gateways that would bind the same address and port."""
        seen: dict[tuple[str, int], str] = {}
        out = []
        for lst in self.ir.listeners:
            gateway = f"Gateway {lst.gateway_namespace}/{lst.gateway_name}"
            key = (self.options.bind_address(lst.gateway_namespace, lst.gateway_name), lst.port)
            if key in seen:
                out.append(f"{gateway} and {seen[key]} both listen on {key[0]}:{key[1]}")
            else:
                seen[key] = gateway
        return out


def translate(
    objects: Iterable[KubeObject],
    options: TranslateOptions | None = None,
    controller_name: str = CONTROLLER_NAME,
    gateways: set[tuple[str, str]] | None = None,
) -> Translation:
    """Translate objects into Envoy configuration for this controller's Gateways (all, or those in `gateways`)."""
    options = options or TranslateOptions()
    graph = resolve(Snapshot.of(objects, controller_name))
    return Translation(graph, lower(graph, options, gateways), options)


__all__ = ["GatewayRuntime", "StatusOptions", "TranslateOptions", "Translation", "translate"]
