"""Names poolgate gives to what it generates: Envoy clusters, listeners, and Kubernetes children."""

from __future__ import annotations

import hashlib


def pool_cluster(namespace: str, name: str) -> str:
    return f"poolgate/pool/{namespace}/{name}"


def service_cluster(namespace: str, name: str, port: int) -> str:
    return f"poolgate/service/{namespace}/{name}/{port}"


def picker_cluster(namespace: str, name: str, port: int) -> str:
    return f"poolgate/picker/{namespace}/{name}/{port}"


MODEL_ROUTER_CLUSTER = "poolgate/model-router"
INVALID_BACKEND_CLUSTER = "poolgate/invalid-backend"  # never defined: requests to it get 500


def listener_name(namespace: str, gateway: str, port: int) -> str:
    return f"poolgate/{namespace}/{gateway}/{port}"


def dns_label(*parts: str, max_length: int = 63) -> str:
    """A Kubernetes object name from parts, shortened with a stable hash suffix when over `max_length`."""
    name = "-".join(parts)
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: max_length - 9].rstrip('-')}-{digest}"


def pool_endpoints_service(pool: str) -> str:
    """The headless Service poolgate creates to publish a pool's endpoints to Envoy in Kubernetes."""
    return dns_label(pool, "endpoints")


MANAGED_PICKER_PORT = 9002


def managed_picker(pool: str) -> str:
    """Name of the Deployment, Service and ConfigMap of the picker poolgate manages for a pool."""
    return dns_label(pool, "epp")
