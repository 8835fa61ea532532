"""Hypothesis strategies for Metacontroller requests: objects shaped like their schemas (with a share of values the
schemas or poolgate refuse), wrapped in v1 or v2 request envelopes for one of the hooks."""

from __future__ import annotations

import copy

from hypothesis import strategies as st

from poolgate.api.contract import CONTROLLER_NAME

GW = "gateway.networking.k8s.io/v1"
POOL = "inference.networking.k8s.io/v1"
OURS = CONTROLLER_NAME
HOOK_KINDS = {
    "gatewayclasses": "GatewayClass",
    "gatewayclass-finalizer": "GatewayClass",
    "gateways": "Gateway",
    "httproutes": "HTTPRoute",
    "inferencepools": "InferencePool",
}

gateway_names = st.sampled_from(["gw", "gw", "a", "b", "Bad_Name"])
pool_names = st.sampled_from(["llama", "llama", "qwen", "x" * 70])
service_names = st.sampled_from(["epp", "epp", "llama", "qwen-epp"])
namespaces = st.sampled_from(["default", "default", "default", "team-a", "models"])
times = st.sampled_from(["2026-01-01T00:00:00Z", "2026-02-03T04:05:06Z", "2025-12-31T23:59:59Z"])
ports = st.one_of(st.sampled_from([80, 8000, 8001, 8080, 9002, 9090, 19001]), st.integers(-1, 70000))
labels = st.dictionaries(
    st.sampled_from(["app", "team", "tier"]), st.sampled_from(["a", "llama", "qwen", "x y"]), max_size=2
)
selectors = st.fixed_dictionaries({"matchLabels": labels})


def optional(strategy, key: str) -> st.SearchStrategy:
    return st.one_of(st.just({}), strategy.map(lambda value: {key: value}))


@st.composite
def metadata(draw, kind: str, names: st.SearchStrategy, namespaced: bool = True) -> dict:
    out = {
        "name": draw(names),
        "uid": f"{kind}-uid",
        "generation": draw(st.integers(0, 5)),
        "creationTimestamp": draw(times),
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "time": draw(times)}],
    }
    if namespaced:
        out["namespace"] = draw(namespaces)
    annotations = draw(
        st.dictionaries(
            st.sampled_from(
                ["poolgate.dev/managed-picker", "poolgate.dev/scheduling-profile", "poolgate.dev/failure-mode"]
            ),
            st.sampled_from(["true", "false", "FailOpen", "llmd-default"]),
            max_size=3,
        )
    )
    if annotations:
        out["annotations"] = annotations
    return out


@st.composite
def conditions(draw) -> list[dict]:
    types = draw(
        st.lists(st.sampled_from(["Accepted", "ResolvedRefs", "Programmed"]), unique=True, min_size=1, max_size=3)
    )
    return [
        {
            "type": t,
            "status": draw(st.sampled_from(["True", "False"])),
            "reason": draw(st.sampled_from(["Accepted", "Pending", "ResolvedRefs"])),
            "message": "m",
            "observedGeneration": draw(st.integers(0, 5)),
            "lastTransitionTime": draw(times),
        }
        for t in types
    ]


@st.composite
def parents_status(draw) -> dict:
    entries = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "parentRef": st.fixed_dictionaries(
                        {
                            "group": st.just("gateway.networking.k8s.io"),
                            "kind": st.just("Gateway"),
                            "name": st.sampled_from(["gw", "a", "b"]),
                            "namespace": namespaces,
                        }
                    ),
                    "controllerName": st.sampled_from([OURS, "example.com/other"]),
                    "conditions": conditions(),
                }
            ),
            max_size=3,
        )
    )
    return {"parents": entries}


@st.composite
def gateway_class(draw) -> dict:
    names = st.sampled_from(["poolgate", "other"])
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": draw(metadata("GatewayClass", names, namespaced=False)),
        "spec": {"controllerName": draw(st.sampled_from([OURS, OURS, "example.com/other", "no-slash"]))},
    }


@st.composite
def listener(draw) -> dict:
    admitted = {"from": draw(st.sampled_from(["Same", "All", "Selector"]))}
    if admitted["from"] == "Selector" or draw(st.booleans()):
        admitted["selector"] = draw(selectors)
    out = {
        "name": draw(st.sampled_from(["http", "web", "a"])),
        "port": draw(ports),
        "protocol": draw(st.sampled_from(["HTTP", "HTTP", "HTTPS", "TCP"])),
        "allowedRoutes": {"namespaces": admitted},
    }
    out.update(draw(optional(st.sampled_from(["example.com", "*.example.com", "Bad Host"]), "hostname")))
    return out


@st.composite
def gateway(draw) -> dict:
    obj = {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": draw(metadata("Gateway", gateway_names)),
        "spec": {
            "gatewayClassName": draw(st.sampled_from(["poolgate", "poolgate", "other", "missing"])),
            "listeners": draw(st.lists(listener(), max_size=3)),
        },
    }
    if draw(st.booleans()):
        obj["status"] = {"conditions": draw(conditions())}
    return obj


@st.composite
def backend_ref(draw) -> dict:
    pool = draw(st.booleans())
    ref = {
        "group": "inference.networking.k8s.io" if pool else "",
        "kind": "InferencePool" if pool else "Service",
        "name": draw(pool_names if pool else service_names),
        "weight": draw(st.integers(0, 100)),
    }
    ref.update(draw(optional(namespaces, "namespace")))
    if not pool or draw(st.booleans()):
        ref.update(draw(optional(ports, "port")))
    return ref


@st.composite
def route_rule(draw) -> dict:
    match = {
        "path": {
            "type": draw(st.sampled_from(["PathPrefix", "Exact", "RegularExpression"])),
            "value": draw(st.sampled_from(["/", "/v1", "v1", "/a//b"])),
        }
    }
    if draw(st.booleans()):
        match["headers"] = [{"name": "X-Gateway-Model-Name", "value": draw(st.sampled_from(["llama", "qwen"]))}]
    rule = {"matches": [match], "backendRefs": draw(st.lists(backend_ref(), max_size=3))}
    if draw(st.integers(0, 4)) == 0:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}}]
    return rule


@st.composite
def http_route(draw) -> dict:
    parents = draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["gw", "a", "b"])},
                optional={
                    "namespace": namespaces,
                    "sectionName": st.sampled_from(["http", "web", "nope"]),
                    "port": ports,
                },
            ),
            max_size=3,
        )
    )
    obj = {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": draw(metadata("HTTPRoute", st.sampled_from(["r1", "r2"]))),
        "spec": {"parentRefs": parents, "rules": draw(st.lists(route_rule(), min_size=1, max_size=3))},
    }
    obj["spec"].update(
        draw(optional(st.lists(st.sampled_from(["example.com", "*.example.com"]), max_size=2), "hostnames"))
    )
    if draw(st.booleans()):
        obj["status"] = draw(parents_status())
    return obj


@st.composite
def inference_pool(draw) -> dict:
    spec = {
        "selector": {"matchLabels": draw(labels)},
        "targetPorts": [{"number": p} for p in draw(st.lists(ports, min_size=0, max_size=4))],
        "appProtocol": draw(st.sampled_from(["http", "kubernetes.io/h2c"])),
    }
    if draw(st.booleans()):
        picker = {"name": draw(service_names), "failureMode": draw(st.sampled_from(["FailOpen", "FailClose"]))}
        picker.update(draw(optional(st.fixed_dictionaries({"number": ports}), "port")))
        spec["endpointPickerRef"] = picker
    obj = {
        "apiVersion": POOL,
        "kind": "InferencePool",
        "metadata": draw(metadata("InferencePool", pool_names)),
        "spec": spec,
    }
    if draw(st.booleans()):
        obj["status"] = draw(parents_status())
    return obj


@st.composite
def service(draw) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": draw(metadata("Service", service_names)),
        "spec": {
            "type": draw(st.sampled_from(["ClusterIP", "ExternalName", "LoadBalancer"])),
            "clusterIP": "10.96.0.9",
            "ports": [{"port": p} for p in draw(st.lists(st.sampled_from([80, 9002, 8000]), unique=True, max_size=2))],
        },
        "status": {
            "loadBalancer": draw(
                st.sampled_from(
                    [{}, {"ingress": [{"ip": "203.0.113.9"}]}, {"ingress": [{"hostname": "lb.example.com"}]}]
                )
            )
        },
    }


@st.composite
def reference_grant(draw) -> dict:
    return {
        "apiVersion": GW,
        "kind": "ReferenceGrant",
        "metadata": draw(metadata("ReferenceGrant", st.just("grant"))),
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": draw(namespaces)}],
            "to": [
                {
                    "group": draw(st.sampled_from(["inference.networking.k8s.io", ""])),
                    "kind": draw(st.sampled_from(["InferencePool", "Service"])),
                }
            ],
        },
    }


@st.composite
def namespace_object(draw) -> dict:
    name = draw(namespaces)
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **draw(labels)}},
    }


@st.composite
def deployment(draw) -> dict:
    status = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "observedGeneration": st.integers(0, 3),
                "availableReplicas": st.integers(0, 2),
                "conditions": st.lists(
                    st.fixed_dictionaries(
                        {
                            "type": st.just("Available"),
                            "status": st.sampled_from(["True", "False"]),
                            "lastTransitionTime": times,
                        }
                    ),
                    max_size=1,
                ),
            },
        )
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": draw(metadata("Deployment", st.sampled_from(["gw-envoy", "llama-epp"]))),
        "spec": {"replicas": draw(st.integers(0, 2))},
        "status": status,
    }


OUR_CLASS = {
    "apiVersion": GW,
    "kind": "GatewayClass",
    "metadata": {"name": "poolgate"},
    "spec": {"controllerName": OURS},
}
PARENTS = {
    "GatewayClass": gateway_class(),
    "Gateway": gateway(),
    "HTTPRoute": http_route(),
    "InferencePool": inference_pool(),
}
related_objects = st.lists(
    st.one_of(
        gateway_class(),
        gateway(),
        gateway(),
        http_route(),
        http_route(),
        inference_pool(),
        service(),
        reference_grant(),
        namespace_object(),
    ),
    max_size=10,
)


def object_map(objects: list[dict], v2: bool) -> dict:
    """`{"Kind.apiVersion": {key: object}}` keyed as the hook version does."""
    out: dict = {}
    for obj in objects:
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") and v2 else meta["name"]
        out.setdefault(f"{obj['kind']}.{obj['apiVersion']}", {})[key] = obj
    return out


@st.composite
def requests(draw) -> tuple[str, dict]:
    """A schema-shaped request to one of the hooks: (URL path, body)."""
    controller = draw(st.sampled_from(sorted(HOOK_KINDS)))
    hook = draw(st.sampled_from(["customize", "sync"])) if controller != "gatewayclasses" else "sync"
    parent = draw(PARENTS[HOOK_KINDS[controller]])
    if hook == "customize":
        return f"/{controller}/customize", {"controller": {}, "parent": parent}
    v2 = draw(st.booleans())
    children = draw(st.lists(st.one_of(deployment(), service()), max_size=3))
    body = {
        "controller": {},
        "object": parent,
        "attachments": object_map(children, v2),
        "related": object_map(draw(related_objects) + draw(st.sampled_from([[], [OUR_CLASS], [OUR_CLASS]])), v2),
        "finalizing": draw(st.booleans()),
    }
    return f"/{controller}/{hook}", body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@st.composite
def damaged_requests(draw) -> tuple[str, dict]:
    """A schema-shaped request with one value anywhere in it replaced by arbitrary JSON."""
    path, body = draw(requests())
    body = copy.deepcopy(body)
    node, key = body, None
    for _ in range(draw(st.integers(1, 6))):
        container = node if key is None else node[key]
        if isinstance(container, dict) and container:
            node, key = container, draw(st.sampled_from(sorted(container)))
        elif isinstance(container, list) and container:
            node, key = container, draw(st.integers(0, len(container) - 1))
        else:
            break
    if key is not None:
        node[key] = draw(json_values)
    return path, body
