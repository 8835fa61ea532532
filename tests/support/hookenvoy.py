"""A Gateway's Envoy as the Gateway hook declares it, run on loopback: the files of the ConfigMap it answers with
(bootstrap, listeners, clusters), the bootstrap pointed at a local directory with admin and readiness on free ports
and, when given one, a local DNS server (tests/support/dns.py) answering for the cluster's Service names."""

from __future__ import annotations

from pathlib import Path

import yaml

from hooks import envoy
from hooks.settings import HookSettings

CARES = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"


def config_map_files(answer: dict) -> dict[str, object]:
    """The files of the Envoy ConfigMap in a Gateway hook's sync answer, parsed."""
    config_map = next(a for a in answer["attachments"] if a["kind"] == "ConfigMap")
    return {name: yaml.safe_load(text) for name, text in config_map["data"].items()}


def local_files(
    answer: dict,
    config_dir: Path,
    admin_port: int,
    ready_port: int,
    settings: HookSettings | None = None,
    resolver: tuple[str, int] | None = None,
) -> dict[str, object]:
    """The ConfigMap's files with the only changes running outside a pod needs: the bootstrap reads `config_dir`,
    admin and readiness listen on the given ports, and (with `resolver`) names resolve at that DNS server alone."""
    settings = settings or HookSettings()
    files = config_map_files(answer)
    assert files["bootstrap.yaml"] == envoy.bootstrap(settings)
    bootstrap = envoy.bootstrap(settings, str(config_dir))
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = admin_port
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = ready_port
    if resolver is not None:
        bootstrap["typed_dns_resolver_config"] = {
            "name": "envoy.network.dns_resolver.cares",
            "typed_config": {
                "@type": CARES,
                "resolvers": [{"socket_address": {"address": resolver[0], "port_value": resolver[1]}}],
                "dns_resolver_options": {"no_default_search_domain": True},
            },
        }
    files["bootstrap.yaml"] = bootstrap
    return files


def observed_pools(answer: dict) -> dict[str, bool]:
    """For each pool the routes of a Gateway hook's answer forward to, whether its responses go to the observe-only
    call (the route overrides the response observer) rather than the picking call."""
    listener = config_map_files(answer)["lds.yaml"]["resources"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    out = {}
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        observer = route["typed_per_filter_config"].get("poolgate.response_observer", {})
        out[route["metadata"]["filter_metadata"]["poolgate"]["pools"]] = "overrides" in observer
    return out
