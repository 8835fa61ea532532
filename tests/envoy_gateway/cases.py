"""Inputs for the Envoy Gateway target's tests: an Envoy Gateway class and Gateway, routes to pools, and helpers to
find generated objects."""

from __future__ import annotations

from poolgate.api.builders import build, gateway, gateway_class, pod, pool, pool_ref, route, service
from poolgate.egtarget import CalloutService

EG = "gateway.envoyproxy.io/gatewayclass-controller"


def eg_class() -> dict:
    return gateway_class("eg", EG)


def eg_gateway(name: str = "gw", namespace: str = "default", listeners: list[dict] | None = None) -> dict:
    return gateway(name, namespace, listeners, class_name="eg")


def service_ref(name: str, port: int = 8080, weight: int | None = None) -> dict:
    ref = {"name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def rule(*backends: dict, header: str | None = None, **extra) -> dict:
    out = {"backendRefs": list(backends), **extra}
    if header:
        out["matches"] = [{"headers": [{"name": "x-pool", "value": header}]}]
    return out


def two_pools() -> list:
    """A route with a FailClose pool (two ports, h2c), a FailOpen pool and a Service rule, pods for both pools."""
    return build(
        eg_class(),
        eg_gateway(),
        route(
            "models",
            rules=[
                rule(pool_ref("llama"), header="llama"),
                rule(pool_ref("qwen"), header="qwen"),
                rule(service_ref("docs"), header="docs"),
            ],
        ),
        pool("llama", ports=(8000, 8001), picker="llama-epp", h2c=True),
        service("llama-epp", ip="10.0.0.10"),
        pool("qwen", picker="qwen-epp", failure_mode="FailOpen"),
        service("qwen-epp", ip="10.0.0.11"),
        service("docs", ip="10.0.0.20", port=8080),
        pod("llama-0", "10.1.0.1", app="llama"),
        pod("qwen-0", "10.1.0.2", app="qwen"),
    )


def split_route() -> list:
    """A rule splitting 80/20 across a FailClose and a FailOpen pool, a rule splitting 90/10 between a pool and a
    Service, and a plain pool rule."""
    return build(
        eg_class(),
        eg_gateway(),
        service("epp-a"),
        service("epp-b", ip="10.0.0.3"),
        service("docs"),
        pool("a", picker="epp-a"),
        pool("b", picker="epp-b", failure_mode="FailOpen"),
        route(
            rules=[
                rule(pool_ref("a", weight=80), pool_ref("b", weight=20), header="split"),
                rule(pool_ref("a", weight=90), service_ref("docs", 9002, weight=10), header="mixed"),
                rule(pool_ref("a"), header="fine"),
            ]
        ),
    )


MODEL_ROUTER = CalloutService("default", "model-router", 9004, "model router Service default/model-router")


def model_routing() -> list:
    """Rules matching X-Gateway-Model-Name: model a-model to the FailClose pool a, b-model to the FailOpen pool b,
    next to an 80/20 split of both."""
    model = "X-Gateway-Model-Name"
    return build(
        eg_class(),
        eg_gateway(),
        service("epp-a"),
        service("epp-b", ip="10.0.0.3"),
        service("model-router", ip="10.0.0.4", port=9004),
        pool("a", picker="epp-a"),
        pool("b", picker="epp-b", failure_mode="FailOpen"),
        route(
            rules=[
                {"matches": [{"headers": [{"name": model, "value": "a-model"}]}], "backendRefs": [pool_ref("a")]},
                {"matches": [{"headers": [{"name": model, "value": "b-model"}]}], "backendRefs": [pool_ref("b")]},
                rule(pool_ref("a", weight=80), pool_ref("b", weight=20), header="split"),
            ]
        ),
    )


def find(objects: list[dict], kind: str, name: str | None = None, namespace: str = "default") -> dict:
    """The one generated object of `kind` (and `name`) in `namespace`."""
    found = [
        o
        for o in objects
        if o["kind"] == kind and o["metadata"]["namespace"] == namespace and name in (None, o["metadata"]["name"])
    ]
    assert len(found) == 1, [(o["kind"], o["metadata"]["name"]) for o in found]
    return found[0]


def kinds(objects: list[dict]) -> list[str]:
    return [o["kind"] for o in objects]
