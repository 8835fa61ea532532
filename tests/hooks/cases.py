"""The Metacontroller requests of the golden fixtures (tests/hooks/fixtures/<controller>/<hook>/<case>.json).

The committed JSON files are what the tests feed the hooks; this module is how they were written, so that a case
can be changed in one readable place: `POOLGATE_UPDATE_GOLDEN=1 pytest tests/hooks/test_golden.py` rewrites the
requests from here and the expected responses from the hooks (review the diff by hand), and a test checks the
committed requests still match this module.

Requests are shaped like Metacontroller v4.17.2 sends them to a DecoratorController with hook version v2 (its Go
types DecoratorHookRequest and CustomizeHookRequest): `{controller, object, attachments, related, finalizing}` for
sync/finalize and `{controller, parent}` for customize, object maps keyed `"<Kind>.<apiVersion>"` then
`namespace/name` (just `name` for cluster-scoped objects); every object carries the metadata the API server adds
(uid, resourceVersion, generation, creationTimestamp, managedFields)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import yaml

from poolgate.api.contract import CONTROLLER_NAME

REPO = Path(__file__).resolve().parents[2]
GW = "gateway.networking.k8s.io/v1"
POOL = "inference.networking.k8s.io/v1"
OURS = CONTROLLER_NAME
OTHER = "example.com/other-gateway"
CREATED = "2026-03-01T10:00:00Z"
EDITED = "2026-03-02T09:30:00Z"  # when users last applied their objects
WRITTEN = "2026-03-02T09:31:15Z"  # when controllers last wrote status
READY = "2026-03-02T09:32:40Z"  # when the Envoy Deployment became available
LAST_APPLIED = "metacontroller.k8s.io/last-applied-configuration"


# --- objects as the API server returns them -----------------------------------------------------------------------


def meta(
    kind: str, name: str, namespace: str | None = "default", generation: int = 1, manager: str = "kubectl", **extra
) -> dict:
    """Server-side metadata: uid, resourceVersion, generation, creationTimestamp and a managedFields entry."""
    key = f"{kind}/{namespace or ''}/{name}"
    out = {
        "name": name,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
        "resourceVersion": str(1000 + int(uuid.uuid5(uuid.NAMESPACE_URL, key).int % 9000)),
        "generation": generation,
        "creationTimestamp": CREATED,
        "managedFields": [
            {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": "v1",
                "time": EDITED,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}},
            }
        ],
    }
    if namespace:
        out["namespace"] = namespace
    out.update(extra)
    return out


def gateway_class(name: str = "poolgate", controller: str = OURS, **extra) -> dict:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": meta("GatewayClass", name, None, **extra),
        "spec": {"controllerName": controller},
    }


def namespace(name: str, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            **meta("Namespace", name, None, generation=0),
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def gateway(
    name: str,
    listeners: list[dict],
    class_name: str = "poolgate",
    ns: str = "default",
    status: dict | None = None,
    generation: int = 1,
) -> dict:
    obj = {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": meta("Gateway", name, ns, generation),
        "spec": {"gatewayClassName": class_name, "listeners": listeners},
    }
    if status:
        obj["status"] = status
    return obj


def listener(name: str, port: int, admit: str = "Same", selector: dict | None = None) -> dict:
    namespaces: dict = {"from": admit}
    if selector:
        namespaces["selector"] = selector
    return {"name": name, "port": port, "protocol": "HTTP", "allowedRoutes": {"namespaces": namespaces}}


def route(
    name: str,
    parents: list[dict],
    rules: list[dict],
    ns: str = "default",
    status: dict | None = None,
    generation: int = 1,
) -> dict:
    obj = {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": meta("HTTPRoute", name, ns, generation),
        "spec": {"parentRefs": parents, "rules": rules},
    }
    if status:
        obj["status"] = status
    return obj


def pool_ref(name: str, weight: int | None = None, ns: str | None = None) -> dict:
    ref = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name}
    if weight is not None:
        ref["weight"] = weight
    if ns:
        ref["namespace"] = ns
    return ref


def pool(
    name: str,
    ports: list[int],
    picker: str | None,
    failure_mode: str = "FailClose",
    ns: str = "default",
    h2c: bool = False,
    status: dict | None = None,
    annotations: dict | None = None,
    generation: int = 1,
) -> dict:
    spec: dict = {
        "selector": {"matchLabels": {"app": name}},
        "targetPorts": [{"number": p} for p in ports],
        "appProtocol": "kubernetes.io/h2c" if h2c else "http",
    }
    if picker:
        spec["endpointPickerRef"] = {
            "group": "",
            "kind": "Service",
            "name": picker,
            "port": {"number": 9002},
            "failureMode": failure_mode,
        }
    metadata = meta("InferencePool", name, ns, generation)
    if annotations:
        metadata["annotations"] = annotations
    obj = {"apiVersion": POOL, "kind": "InferencePool", "metadata": metadata, "spec": spec}
    if status:
        obj["status"] = status
    return obj


def service(name: str, ns: str = "default", port: int = 9002, cluster_ip: str = "10.96.10.2") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("Service", name, ns, generation=0),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "selector": {"app": name},
            "ports": [{"name": "grpc", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {}},
    }


def grant(ns: str, from_ns: str) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": meta("ReferenceGrant", f"allow-routes-from-{from_ns}", ns),
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": from_ns}],
            "to": [{"group": "inference.networking.k8s.io", "kind": "InferencePool"}],
        },
    }


def rewrite(name: str, pool_name: str, alias: str, target: str, group: str = "llm-d.ai", ns: str = "default") -> dict:
    """An InferenceModelRewrite: requests for model `alias` to pool `pool_name` are served as `target`."""
    return {
        "apiVersion": f"{group}/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": meta("InferenceModelRewrite", name, ns),
        "spec": {
            "poolRef": {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": pool_name},
            "rules": [
                {"matches": [{"model": {"type": "Exact", "value": alias}}], "targets": [{"modelRewrite": target}]}
            ],
        },
    }


def condition(type_: str, status: str, reason: str, message: str, when: str = WRITTEN, generation: int = 1) -> dict:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": when,
    }


def parent_entry(gateway_name: str, controller: str, conditions: list[dict], ns: str = "default") -> dict:
    return {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway_name, "namespace": ns},
        "controllerName": controller,
        "conditions": conditions,
    }


def theirs(gateway_name: str = "their-gateway") -> dict:
    """A status.parents entry another Gateway implementation wrote (it must come back unchanged)."""
    return parent_entry(
        gateway_name,
        OTHER,
        [
            condition("Accepted", "True", "Accepted", "accepted by example.com", "2026-02-14T08:00:00Z"),
            condition("ResolvedRefs", "True", "ResolvedRefs", "resolved", "2026-02-14T08:00:00Z"),
        ],
    )


# --- the shared world ---------------------------------------------------------------------------------------------


def classes() -> list[dict]:
    return [gateway_class(), gateway_class("other", OTHER)]


def namespaces() -> list[dict]:
    return [namespace("default"), namespace("team-a", {"team": "a"}), namespace("models")]


def gw_a(**extra) -> dict:
    return gateway("gw-a", [listener("http", 8080)], **extra)


def gw_b(**extra) -> dict:
    return gateway("gw-b", [listener("http", 9090, "All")], **extra)


def gw_other() -> dict:
    return gateway("gw-other", [listener("http", 80)], class_name="other")


def llm_route(**extra) -> dict:
    """Two pools 70/30 on /v1, and requests for model `qwen` (header set by the model router) to qwen only."""
    return route(
        "llm-route",
        [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-a"}],
        [
            {
                "matches": [
                    {
                        "path": {"type": "PathPrefix", "value": "/v1"},
                        "headers": [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": "qwen"}],
                    }
                ],
                "backendRefs": [pool_ref("qwen", 1)],
            },
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                "backendRefs": [pool_ref("llama", 70), pool_ref("qwen", 30)],
                "timeouts": {"request": "300s"},
            },
        ],
        **extra,
    )


def b_route() -> dict:
    return route(
        "b-route",
        [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-b"}],
        [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [pool_ref("llama")]}],
    )


def llama(**extra) -> dict:
    return pool("llama", [8000], "llama-epp", "FailOpen", **extra)


def qwen(**extra) -> dict:
    return pool("qwen", [8000, 8001, 8002], "qwen-epp", h2c=True, **extra)


def pickers() -> list[dict]:
    return [service("llama-epp", cluster_ip="10.96.10.2"), service("qwen-epp", cluster_ip="10.96.10.3")]


# --- Metacontroller envelopes -------------------------------------------------------------------------------------


def controller(name: str) -> dict:
    """The DecoratorController object Metacontroller sends along (as installed from metacontroller/)."""
    short = name.removeprefix("poolgate-")
    if short.startswith("envoy-gateway-"):  # the opt-in controllers of metacontroller/envoy-gateway/
        short = "envoy-gateway/" + short.removeprefix("envoy-gateway-")
    manifest = yaml.safe_load((REPO / "metacontroller" / f"{short}.yaml").read_text())
    manifest["metadata"] = meta("DecoratorController", name, None, manager="helm")
    return manifest


def object_map(objects: list[dict]) -> dict:
    out: dict = {}
    for obj in objects:
        metadata = obj["metadata"]
        key = f"{metadata['namespace']}/{metadata['name']}" if metadata.get("namespace") else metadata["name"]
        out.setdefault(f"{obj['kind']}.{obj['apiVersion']}", {})[key] = obj
    return out


def sync_request(
    name: str,
    parent: dict,
    related: list[dict] = (),
    children: list[dict] = (),
    attachment_kinds: tuple[str, ...] = (),
    finalizing: bool = False,
) -> dict:
    """A v2 decorator sync/finalize request; `attachments` has an entry (maybe empty) for every attachment kind, as
    Metacontroller sends."""
    observed = {kind: {} for kind in attachment_kinds}
    observed.update(object_map(list(children)))
    return {
        "controller": controller(name),
        "object": parent,
        "attachments": observed,
        "related": object_map(list(related)),
        "finalizing": finalizing,
    }


def customize_request(name: str, parent: dict) -> dict:
    return {"controller": controller(name), "parent": parent}


def attached(declared: dict, parent: dict, controller_name: str, status: dict | None = None) -> dict:
    """An attachment as Metacontroller created it from what a hook declared: owner reference, its annotations,
    server metadata, and the status its own controller wrote."""
    obj = copy.deepcopy(declared)
    recorded = copy.deepcopy(declared)
    recorded["metadata"].setdefault("annotations", {})["metacontroller.k8s.io/decorator-controller"] = controller_name
    metadata = obj["metadata"]
    server = meta(obj["kind"], metadata["name"], metadata.get("namespace"), manager="metacontroller")
    metadata.update({k: v for k, v in server.items() if k not in ("name", "namespace")})
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        "metacontroller.k8s.io/decorator-controller": controller_name,
        LAST_APPLIED: json.dumps(recorded, sort_keys=True, separators=(",", ":")),
    }
    metadata["ownerReferences"] = [
        {
            "apiVersion": parent["apiVersion"],
            "kind": parent["kind"],
            "name": parent["metadata"]["name"],
            "uid": parent["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    if status is not None:
        obj["status"] = status
    return obj


def available_deployment_status(replicas: int = 1) -> dict:
    return {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastUpdateTime": READY,
                "lastTransitionTime": READY,
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": "ReplicaSet has successfully progressed.",
                "lastUpdateTime": READY,
                "lastTransitionTime": CREATED,
            },
        ],
    }


def load_balancer_status(ip: str) -> dict:
    return {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}


# --- the cases ----------------------------------------------------------------------------------------------------

GATEWAY_KINDS = ("ConfigMap.v1", "Deployment.apps/v1", "Service.v1")
POOL_KINDS = (
    "ConfigMap.v1",
    "Deployment.apps/v1",
    "Role.rbac.authorization.k8s.io/v1",
    "RoleBinding.rbac.authorization.k8s.io/v1",
    "Service.v1",
    "ServiceAccount.v1",
)


def _gateway_world() -> list[dict]:
    return [*classes(), llm_route(), b_route(), llama(), qwen(), *pickers()]


def _observed_envoy(parent: dict, deployment_status: dict, service_status: dict) -> list[dict]:
    """The Envoy objects of gw-a as the hook declared them some time ago, created and running."""
    labels = {"app.kubernetes.io/name": "poolgate-envoy", "gateway.networking.k8s.io/gateway-name": "gw-a"}
    metadata = {"name": "gw-a-envoy", "namespace": "default", "labels": labels}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {
            "bootstrap.yaml": "node: {id: poolgate}\n",
            "lds.yaml": "resources: []\n",
            "cds.yaml": "resources: []\n",
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "envoy", "image": "envoyproxy/envoy:v1.40.0", "command": ["envoy"]}],
                    "volumes": [{"name": "config", "configMap": {"name": "gw-a-envoy"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "LoadBalancer",
            "selector": labels,
            "ports": [{"name": "http-8080", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
        },
    }
    return [
        attached(config_map, parent, "poolgate-gateways"),
        attached(deployment, parent, "poolgate-gateways", deployment_status),
        attached(service, parent, "poolgate-gateways", service_status),
    ]


MANAGED = {"poolgate.dev/managed-picker": "true"}


def managed_pickers_world() -> list[dict]:
    """Gateway gw-m's route to four FailClose pools: `observed` (managed picker), `renamed` (managed, named by an
    InferenceModelRewrite in llm-d.ai), `aliased` (managed, named by one in inference.networking.x-k8s.io) and
    `own` (a picker Service of the user's, which may be upstream's)."""
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}], "backendRefs": [pool_ref(name)]}
        for name in ("observed", "renamed", "aliased", "own")
    ]
    return [
        *classes(),
        route("m-route", [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-m"}], rules),
        *(pool(name, [8000], None, annotations=MANAGED) for name in ("observed", "renamed", "aliased")),
        pool("own", [8000], "own-epp"),
        service("own-epp", cluster_ip="10.96.10.4"),
        rewrite("renamed-canary", "renamed", "chat", "chat-v2"),
        rewrite("aliased-names", "aliased", "alias", "served", group="inference.networking.x-k8s.io"),
    ]


def gateway_cases() -> dict[str, dict]:
    programmed_earlier = {
        "conditions": [
            condition("Accepted", "True", "Accepted", "Gateway is accepted", "2026-03-01T10:00:05Z"),
            condition(
                "Programmed",
                "False",
                "Pending",
                "waiting for Deployment default/gw-a-envoy to be created",
                "2026-03-01T10:00:05Z",
            ),
        ]
    }
    a = gw_a(status=programmed_earlier)
    invalid = gateway("gw-a", [listener("http", 8080), listener("http", 8081)], generation=2, status=programmed_earlier)
    return {
        "customize/selector-and-same": customize_request(
            "poolgate-gateways",
            gateway(
                "gw-s", [listener("http", 8080), listener("team", 8081, "Selector", {"matchLabels": {"team": "a"}})]
            ),
        ),
        "customize/all-namespaces": customize_request("poolgate-gateways", gw_b()),
        "sync/two-gateways-a": sync_request(
            "poolgate-gateways",
            a,
            _gateway_world(),
            _observed_envoy(a, available_deployment_status(), load_balancer_status("203.0.113.10")),
            GATEWAY_KINDS,
        ),
        "sync/two-gateways-b": sync_request("poolgate-gateways", gw_b(), _gateway_world(), (), GATEWAY_KINDS),
        "sync/other-class": sync_request("poolgate-gateways", gw_other(), [*classes()], (), GATEWAY_KINDS),
        "sync/managed-pickers": sync_request(
            "poolgate-gateways", gateway("gw-m", [listener("http", 8080)]), managed_pickers_world(), (), GATEWAY_KINDS
        ),
        "sync/invalid-listeners": sync_request(
            "poolgate-gateways",
            invalid,
            _gateway_world(),
            _observed_envoy(a, available_deployment_status(), load_balancer_status("203.0.113.10")),
            GATEWAY_KINDS,
        ),
    }


def _route_world() -> list[dict]:
    return [*classes(), namespace("default"), gw_a(), gw_b(), gw_other()]


def route_cases() -> dict[str, dict]:
    parent_a = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-a"}
    parent_b = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-b"}
    parent_other = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-other"}
    ours_accepted = [
        condition("Accepted", "True", "Accepted", "Route is accepted", "2026-03-01T10:00:05Z"),
        condition("ResolvedRefs", "True", "ResolvedRefs", "All references are resolved", "2026-03-01T10:00:05Z"),
    ]
    models_route = route("models-route", [parent_a], [{"backendRefs": [pool_ref("mistral", ns="models")]}])
    mistral = pool("mistral", [8000], "mistral-epp", ns="models")
    invalid_rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "v1"}}], "backendRefs": [pool_ref("llama")]}]
    return {
        "customize/cross-namespace": customize_request(
            "poolgate-httproutes",
            route(
                "mixed",
                [parent_a, {**parent_b, "namespace": "team-a", "sectionName": "http"}],
                [
                    {"backendRefs": [pool_ref("llama", 50), pool_ref("mistral", 50, "models")]},
                    {"backendRefs": [{"kind": "Service", "name": "echo", "port": 80, "namespace": "team-a"}]},
                ],
            ),
        ),
        "sync/weighted-pools": sync_request(
            "poolgate-httproutes",
            llm_route(status={"parents": [theirs(), parent_entry("gw-a", OURS, ours_accepted)]}),
            [*_route_world(), llama(), qwen()],
        ),
        "sync/missing-pool": sync_request("poolgate-httproutes", llm_route(), [*_route_world(), llama()]),
        "sync/cross-namespace-without-grant": sync_request(
            "poolgate-httproutes", models_route, [*_route_world(), mistral]
        ),
        "sync/cross-namespace-with-grant": sync_request(
            "poolgate-httproutes", models_route, [*_route_world(), mistral, grant("models", "default")]
        ),
        "sync/parent-removed": sync_request(
            "poolgate-httproutes",
            route(
                "moved",
                [parent_other],
                [{"backendRefs": [pool_ref("llama")]}],
                generation=3,
                status={"parents": [theirs(), parent_entry("gw-a", OURS, ours_accepted)]},
            ),
            [*_route_world(), llama()],
        ),
        "sync/other-gateway-only": sync_request(
            "poolgate-httproutes",
            route(
                "elsewhere",
                [parent_other],
                [{"backendRefs": [pool_ref("llama")]}],
                status={"parents": [theirs("gw-other")]},
            ),
            [*_route_world(), llama()],
        ),
        "sync/invalid-path": sync_request(
            "poolgate-httproutes",
            route("bad-path", [parent_a, parent_other], invalid_rules, generation=2),
            [*_route_world(), llama()],
        ),
    }


def _pool_world() -> list[dict]:
    return [*classes(), *namespaces(), gw_a(), gw_b(), gw_other(), llm_route(), b_route(), *pickers()]


def pool_cases() -> dict[str, dict]:
    ours_before = [
        condition("Accepted", "True", "Accepted", "InferencePool is accepted", "2026-03-01T10:00:05Z"),
        condition("ResolvedRefs", "True", "ResolvedRefs", "endpointPickerRef is resolved", "2026-03-01T10:00:05Z"),
    ]
    lonely = pool(
        "lonely", [8000], "llama-epp", status={"parents": [theirs(), parent_entry("gw-a", OURS, ours_before)]}
    )
    lonely_endpoints = _declared_pool_attachments(lonely)
    managed = pool(
        "managed",
        [8000],
        None,
        annotations={"poolgate.dev/managed-picker": "true", "poolgate.dev/scheduling-profile": "llmd-default"},
    )
    managed_route = route(
        "managed-route",
        [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-a"}],
        [{"backendRefs": [pool_ref("managed")]}],
    )
    broken = qwen(generation=2)
    broken["spec"]["targetPorts"] = [{"number": 8000}, {"number": 8000}]
    qwen_declared = _declared_pool_attachments(qwen())
    return {
        "customize/picker-services": customize_request("poolgate-inferencepools", llama()),
        "sync/three-target-ports": sync_request("poolgate-inferencepools", qwen(), _pool_world(), (), POOL_KINDS),
        "sync/missing-picker-service": sync_request(
            "poolgate-inferencepools",
            qwen(),
            [s for s in _pool_world() if s["metadata"]["name"] != "qwen-epp"],
            (),
            POOL_KINDS,
        ),
        "sync/failopen": sync_request(
            "poolgate-inferencepools", llama(status={"parents": [theirs()]}), _pool_world(), (), POOL_KINDS
        ),
        "sync/managed-picker": sync_request(
            "poolgate-inferencepools", managed, [*_pool_world(), managed_route], (), POOL_KINDS
        ),
        "sync/unreferenced-stale-entry": sync_request(
            "poolgate-inferencepools",
            lonely,
            _pool_world(),
            [attached(o, lonely, "poolgate-inferencepools") for o in lonely_endpoints],
            POOL_KINDS,
        ),
        "sync/other-controllers-only": sync_request(
            "poolgate-inferencepools",
            pool("theirs", [8000], "llama-epp", status={"parents": [theirs()]}),
            _pool_world(),
            (),
            POOL_KINDS,
        ),
        "sync/invalid-target-ports": sync_request(
            "poolgate-inferencepools",
            broken,
            _pool_world(),
            [attached(o, qwen(), "poolgate-inferencepools") for o in qwen_declared],
            POOL_KINDS,
        ),
    }


def _declared_pool_attachments(pool_object: dict) -> list[dict]:
    """The attachments the pool hook declares for a pool used by gw-a (what was created while it was)."""
    from hooks import inferencepool as hook
    from hooks.settings import HookSettings

    used = copy.deepcopy(pool_object)
    used.pop("status", None)
    name = used["metadata"]["name"]
    used_route = route(
        "r",
        [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw-a"}],
        [{"backendRefs": [pool_ref(name)]}],
    )
    request = sync_request("poolgate-inferencepools", used, [*classes(), gw_a(), used_route, *pickers()])
    return hook.sync(request, HookSettings())["attachments"]


def class_cases() -> dict[str, dict]:
    deleting = {
        "deletionTimestamp": "2026-03-03T12:00:00Z",
        "finalizers": ["metacontroller.io/decoratorcontroller-poolgate-gatewayclass-finalizer"],
    }
    ours = gateway_class(labels={"poolgate.dev/gateway-class": "true"})
    ours_deleting = gateway_class(labels={"poolgate.dev/gateway-class": "true"}, **deleting)
    return {
        "gatewayclasses/sync/ours": sync_request("poolgate-gatewayclasses", gateway_class()),
        "gatewayclasses/sync/other-class": sync_request("poolgate-gatewayclasses", gateway_class("other", OTHER)),
        "gatewayclass-finalizer/customize/gateways": customize_request("poolgate-gatewayclass-finalizer", ours),
        "gatewayclass-finalizer/sync/alive": sync_request("poolgate-gatewayclass-finalizer", ours, [gw_a()]),
        "gatewayclass-finalizer/sync/deleting-in-use": sync_request(
            "poolgate-gatewayclass-finalizer", ours_deleting, [gw_a(), gw_other()], finalizing=True
        ),
        "gatewayclass-finalizer/sync/deleting-unused": sync_request(
            "poolgate-gatewayclass-finalizer", ours_deleting, [gw_other()], finalizing=True
        ),
    }


EG = "gateway.envoyproxy.io/gatewayclass-controller"
EG_STATUS = "poolgate.dev/envoy-gateway"
EG_GATEWAY_KINDS = (
    "Gateway.gateway.networking.k8s.io/v1",
    "ClientTrafficPolicy.gateway.envoyproxy.io/v1alpha1",
    "EnvoyPatchPolicy.gateway.envoyproxy.io/v1alpha1",
)
EG_ROUTE_KINDS = (
    "HTTPRoute.gateway.networking.k8s.io/v1",
    "EnvoyExtensionPolicy.gateway.envoyproxy.io/v1alpha1",
    "BackendTrafficPolicy.gateway.envoyproxy.io/v1alpha1",
    "Backend.gateway.envoyproxy.io/v1alpha1",
)


def eg_gateway(**extra) -> dict:
    """A Gateway of Envoy Gateway's class."""
    return gateway("eg-gw", [listener("http", 80)], class_name="eg", **extra)


def eg_route(status: dict | None = None, labels: dict | None = None) -> dict:
    """llm-route's rules (a model-named rule to qwen, a 70/30 split of llama and qwen) on the Envoy Gateway
    Gateway."""
    out = route(
        "eg-route", [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg-gw"}], [], status=status
    )
    out["spec"]["rules"] = llm_route()["spec"]["rules"]
    if labels:
        out["metadata"]["labels"] = labels
    return out


def _eg_world() -> list[dict]:
    return [*classes(), gateway_class("eg", EG), *namespaces(), llama(), qwen(), *pickers()]


def eg_cases() -> dict[str, dict]:
    """The opt-in Envoy Gateway controllers (metacontroller/envoy-gateway/)."""
    envoy_gateway_accepted = parent_entry(
        "eg-gw",
        EG,
        [condition("Accepted", "False", "UnsupportedValue", "backendRef kind InferencePool is not supported")],
    )
    from hooks.envoy_gateway import EG_GATEWAY_LABEL, EG_POOL_LABEL_PREFIX
    from hooks.httproute import pool_label

    labelled_route = eg_route(labels={pool_label("default", "llama", EG_POOL_LABEL_PREFIX): "true"})
    labelled_gateway = eg_gateway()
    labelled_gateway["metadata"]["labels"] = {EG_GATEWAY_LABEL: "true"}
    return {
        "gateways/customize/eg-gateway": customize_request("poolgate-envoy-gateway-gateways", eg_gateway()),
        "gateways/sync/eg-gateway": sync_request(
            "poolgate-envoy-gateway-gateways", eg_gateway(), [*_eg_world(), eg_route()], (), EG_GATEWAY_KINDS
        ),
        "gateways/sync/poolgate-gateway": sync_request(
            "poolgate-envoy-gateway-gateways", gw_a(), [*_eg_world(), llm_route()], (), EG_GATEWAY_KINDS
        ),
        "httproutes/customize/eg-route": customize_request("poolgate-envoy-gateway-httproutes", eg_route()),
        "httproutes/sync/eg-route": sync_request(
            "poolgate-envoy-gateway-httproutes",
            eg_route(status={"parents": [envoy_gateway_accepted]}),
            [*_eg_world(), eg_gateway()],
            (),
            EG_ROUTE_KINDS,
        ),
        "httproutes/sync/poolgate-route": sync_request(
            "poolgate-envoy-gateway-httproutes", llm_route(), [*_eg_world(), gw_a()], (), EG_ROUTE_KINDS
        ),
        "inferencepools/customize/llama": customize_request("poolgate-envoy-gateway-inferencepools", llama()),
        "inferencepools/sync/used": sync_request(
            "poolgate-envoy-gateway-inferencepools",
            llama(),
            [*classes(), gateway_class("eg", EG), *namespaces(), labelled_route, labelled_gateway, *pickers()],
            (),
            ("Service.v1",),
        ),
        "inferencepools/sync/unused": sync_request(
            "poolgate-envoy-gateway-inferencepools",
            llama(),
            [*classes(), gateway_class("eg", EG), *namespaces(), *pickers()],
            (),
            ("Service.v1",),
        ),
    }


def malformed_cases() -> dict[str, dict]:
    """Requests that are not Metacontroller requests these hooks answer: each gets 400 and a message."""
    return {
        "gateways/sync/malformed-wrong-kind": sync_request("poolgate-gateways", llm_route()),
        "httproutes/sync/malformed-no-parent": {"controller": controller("poolgate-httproutes"), "finalizing": False},
        "inferencepools/sync/malformed-related-not-a-map": {
            **sync_request("poolgate-inferencepools", llama()),
            "related": [llm_route()],
        },
        "gateways/customize/malformed-parent-not-an-object": {
            "controller": controller("poolgate-gateways"),
            "parent": "gw-a",
        },
    }


def all_cases() -> dict[str, dict]:
    """Every fixture request by its path under fixtures/ (without `.json`): `<controller>/<hook>/<case>`."""
    cases = {**class_cases(), **malformed_cases()}
    cases.update({f"gateways/{k}": v for k, v in gateway_cases().items()})
    cases.update({f"httproutes/{k}": v for k, v in route_cases().items()})
    cases.update({f"inferencepools/{k}": v for k, v in pool_cases().items()})
    cases.update({f"envoy-gateway/{k}": v for k, v in eg_cases().items()})
    return dict(sorted(cases.items()))
