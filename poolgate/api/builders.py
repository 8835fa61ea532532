"""Builders of raw Kubernetes objects (dicts) and request bodies, for tests, e2e tests and benchmarks: short to write,
explicit to read."""

from __future__ import annotations

from poolgate.api.base import GATEWAY_GROUP, INFERENCE_GROUP
from poolgate.api.contract import CONTROLLER_NAME
from poolgate.api.load import parse_objects

GW = f"{GATEWAY_GROUP}/v1"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def gateway_class(name: str = "poolgate", controller: str = CONTROLLER_NAME) -> dict:
    """A GatewayClass (of poolgate's controller unless told otherwise)."""
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def gateway(
    name: str = "gw",
    namespace: str = "default",
    listeners: list[dict] | None = None,
    class_name: str = "poolgate",
    generation: int = 1,
) -> dict:
    """A Gateway; one HTTP listener on port 8080 unless `listeners` are given."""
    listeners = listeners or [{"name": "http", "port": 8080, "protocol": "HTTP"}]
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"gatewayClassName": class_name, "listeners": listeners},
    }


def pool_ref(name: str, weight: int | None = None, namespace: str | None = None, port: int | None = None) -> dict:
    """An HTTPRoute backendRef to an InferencePool."""
    ref: dict = {"group": INFERENCE_GROUP, "kind": "InferencePool", "name": name}
    if weight is not None:
        ref["weight"] = weight
    if namespace:
        ref["namespace"] = namespace
    if port:
        ref["port"] = port
    return ref


def route(
    name: str = "route",
    namespace: str = "default",
    parents: list[dict] | None = None,
    rules: list[dict] | None = None,
    hostnames: list[str] | None = None,
    generation: int = 1,
    status: dict | None = None,
    created: str | None = None,
) -> dict:
    """An HTTPRoute attached to Gateway `gw`, to pool `pool` unless `rules` are given."""
    obj: dict = {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"parentRefs": parents or [{"name": "gw"}], "rules": rules or [{"backendRefs": [pool_ref("pool")]}]},
    }
    if hostnames:
        obj["spec"]["hostnames"] = hostnames
    if status:
        obj["status"] = status
    if created:
        obj["metadata"]["creationTimestamp"] = created
    return obj


def pool(
    name: str = "pool",
    namespace: str = "default",
    app: str | None = None,
    ports: tuple[int, ...] = (8000,),
    picker: str | None = "epp",
    failure_mode: str | None = None,
    h2c: bool = False,
    generation: int = 1,
    status: dict | None = None,
) -> dict:
    """An InferencePool selecting pods labelled app=<app or name>, with picker Service `picker` on port 9002."""
    spec: dict = {"selector": {"matchLabels": {"app": app or name}}, "targetPorts": [{"number": p} for p in ports]}
    if picker:
        spec["endpointPickerRef"] = {"name": picker, "port": {"number": 9002}}
        if failure_mode:
            spec["endpointPickerRef"]["failureMode"] = failure_mode
    if h2c:
        spec["appProtocol"] = "kubernetes.io/h2c"
    obj = {
        "apiVersion": f"{INFERENCE_GROUP}/v1",
        "kind": "InferencePool",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": spec,
    }
    if status:
        obj["status"] = status
    return obj


def service(name: str = "epp", namespace: str = "default", ip: str | None = "127.0.0.2", port: int = 9002) -> dict:
    """A Service with one port (a picker's, by default); no clusterIP when `ip` is None."""
    spec: dict = {"clusterIP": ip} if ip else {}
    spec["ports"] = [{"port": port}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def pod(
    name: str,
    ip: str,
    app: str = "pool",
    namespace: str = "default",
    ready: bool = True,
    annotations: dict | None = None,
) -> dict:
    """A running Pod labelled app=<app>, with its IP and Ready condition."""
    meta: dict = {"name": name, "namespace": namespace, "labels": {"app": app}}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def grant(namespace: str, from_namespace: str, to_kind: str = "InferencePool", to_group: str = INFERENCE_GROUP) -> dict:
    """A ReferenceGrant letting HTTPRoutes of `from_namespace` refer to `to_kind` objects of `namespace`."""
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "allow", "namespace": namespace},
        "spec": {
            "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": from_namespace}],
            "to": [{"group": to_group, "kind": to_kind}],
        },
    }


def build(*raws: dict) -> list:
    """Typed objects from raw dicts; ValueError naming the problems if any is invalid."""
    objects, problems = parse_objects(("builders", raw) for raw in raws)
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    return objects


def basic(*extra: dict) -> list:
    """A GatewayClass, a Gateway, a route to `pool`, the pool with its picker Service and two ready pods."""
    return build(
        gateway_class(), gateway(), route(), pool(), service(), pod("p0", "10.0.0.1"), pod("p1", "10.0.0.2"), *extra
    )


def sim_deployment(
    app: str,
    replicas: int = 2,
    ports: tuple[int, ...] = (8000,),
    model: str = MODEL,
    args: tuple[str, ...] = ("--no-latency",),
    namespace: str = "default",
    name: str | None = None,
) -> dict:
    """A Deployment `name` (default: app) of `replicas` simulated pods labelled app=<app>, serving `model` on `ports`;
    several Deployments may share an app (one pool) under different names."""
    labels = {"app": app} if name is None else {"app": app, "deployment": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name or app, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "model-server",
                            "image": "ghcr.io/poolgate/poolgate:test",
                            "args": ["sim", "--model", model, *args],
                            "ports": [{"containerPort": p} for p in ports],
                        }
                    ]
                },
            },
        },
    }


def listener(port: int = 0) -> list[dict]:
    """One HTTP listener; port 0 is replaced by a free port when the stack starts."""
    return [{"name": "http", "port": port, "protocol": "HTTP"}]


def chat(model: str = MODEL, content: str = "hello", max_tokens: int = 4, stream: bool = False, **extra) -> dict:
    """A chat completion request body; `stream` asks for a stream with a final usage chunk."""
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body
