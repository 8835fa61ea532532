"""The Kubernetes objects of a pool's endpoints and of the endpoint picker poolgate runs for a pool that asks for one
(annotation `poolgate.dev/managed-picker: "true"`): its ConfigMap (scheduling profile), Deployment, Service,
ServiceAccount, Role and RoleBinding."""

from __future__ import annotations

import hashlib

from hooks.settings import HookSettings
from poolgate.api import InferencePool, contract
from poolgate.translate import naming
from poolgate.translate.output import to_yaml
from poolgate.translate.resolve import effective_picker_ref, is_managed

CONFIG_DIR = "/etc/poolgate/picker"
HEALTH_PORT = 9003
METRICS_PORT = 9090
OBJECTIVE_GROUPS = ["inference.networking.x-k8s.io", "llm-d.ai"]
LOAD_EXCHANGE_CONTAINER_PORT = {
    "name": "load-exchange",
    "containerPort": contract.LOAD_EXCHANGE_PORT,
    "protocol": "UDP",
}


def wants_managed_picker(pool: InferencePool) -> bool:
    """Whether the pool asks poolgate to run its endpoint picker."""
    return is_managed(pool)


def endpoints_service(pool: InferencePool) -> dict:
    """The headless Service whose DNS name Envoy resolves to the pool's ready pods: one port per target port."""
    protocol = "kubernetes.io/h2c" if pool.spec.app_protocol == "kubernetes.io/h2c" else "http"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(naming.pool_endpoints_service(pool.name), pool, "pool-endpoints"),
        "spec": {
            "clusterIP": "None",
            "selector": dict(pool.spec.selector.match_labels),
            "publishNotReadyAddresses": False,
            "ports": [
                {
                    "name": f"port-{p.number}",
                    "port": p.number,
                    "targetPort": p.number,
                    "protocol": "TCP",
                    "appProtocol": protocol,
                }
                for p in pool.spec.target_ports
            ],
        },
    }


def managed_picker(pool: InferencePool, settings: HookSettings) -> list[dict]:
    """ConfigMap, Deployment, Service, ServiceAccount, Role and RoleBinding of the pool's managed picker, named as
    its endpointPickerRef names it (`<pool>-epp` when it names none)."""
    ref = effective_picker_ref(pool)
    assert ref is not None and ref.port is not None  # a managed pool always has one, with a port
    name = ref.name
    profile = pool.metadata.annotations.get(contract.PROFILE_ANNOTATION) or settings.picker_profile
    config = to_yaml(
        {"apiVersion": "llm-d.ai/v1alpha1", "kind": "EndpointPickerConfig", "schedulingProfiles": [{"name": profile}]}
    )
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name, pool), "data": {"config.yaml": config}},
        _deployment(name, pool, config, settings),
        _service(name, pool, ref.port.number),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(name, pool)},
        _role(name, pool),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(name, pool),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": pool.namespace}],
        },
    ]


def _selector(pool: InferencePool) -> dict[str, str]:
    return {"app.kubernetes.io/name": "poolgate-picker", contract.POOL_LABEL: naming.dns_label(pool.name)}


def _labels(pool: InferencePool, component: str = "picker") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"poolgate-{component}",
        "app.kubernetes.io/managed-by": "poolgate",
        contract.POOL_LABEL: naming.dns_label(pool.name),
    }


def _metadata(name: str, pool: InferencePool, component: str = "picker") -> dict:
    return {"name": name, "namespace": pool.namespace, "labels": _labels(pool, component)}


def _deployment(name: str, pool: InferencePool, config: str, settings: HookSettings) -> dict:
    container = {
        "name": "picker",
        "image": settings.poolgate_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "picker",
            "--pool-name",
            pool.name,
            "--pool-namespace",
            pool.namespace,
            "--config-file",
            f"{CONFIG_DIR}/config.yaml",
            "--grpc-port",
            str(naming.MANAGED_PICKER_PORT),
            "--grpc-health-port",
            str(HEALTH_PORT),
            "--metrics-port",
            str(METRICS_PORT),
            # ext_proc is served over TLS (the default, as upstream), which the translator's picker clusters speak;
            # /metrics is open, as the upstream chart usually runs it (TokenReview would need cluster-wide RBAC)
            "--metrics-endpoint-auth=false",
            *_load_exchange_args(name, pool, settings),
        ],
        "ports": [
            {"name": "grpc", "containerPort": naming.MANAGED_PICKER_PORT, "protocol": "TCP"},
            {"name": "grpc-health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            *([LOAD_EXCHANGE_CONTAINER_PORT] if settings.picker_replicas > 1 else []),
        ],
        "readinessProbe": {"grpc": {"port": HEALTH_PORT, "service": "readiness"}, "periodSeconds": 5},
        "livenessProbe": {
            "grpc": {"port": HEALTH_PORT, "service": "liveness"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": settings.resources("picker"),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, pool),
        "spec": {
            "replicas": settings.picker_replicas,
            "selector": {"matchLabels": _selector(pool)},
            "template": {
                "metadata": {
                    "labels": _labels(pool),
                    "annotations": {contract.CONFIG_HASH_ANNOTATION: hashlib.sha256(config.encode()).hexdigest()[:16]},
                },
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": name}}],
                },
            },
        },
    }


def _load_exchange_args(name: str, pool: InferencePool, settings: HookSettings) -> list[str]:
    """With several replicas, each announces its load to the others: every address of the picker's headless
    Service (itself included, which it ignores), resolved again every few seconds."""
    if settings.picker_replicas <= 1:
        return []
    peers = f"{name}.{pool.namespace}.svc.{settings.cluster_domain}:{contract.LOAD_EXCHANGE_PORT}"
    return [contract.LOAD_EXCHANGE_PEERS_FLAG, peers]


def _service(name: str, pool: InferencePool, port: int) -> dict:
    """The picker's Service, headless: its DNS name resolves to every ready replica, so that Envoy spreads its picker
    calls over them and stops calling one that fails (a cluster IP would hide the replicas behind one address), and
    so that replicas find each other for the load exchange."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, pool),
        "spec": {
            "clusterIP": "None",
            "selector": _selector(pool),
            "ports": [
                {
                    "name": "grpc",
                    "port": port,
                    "targetPort": naming.MANAGED_PICKER_PORT,
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
                {"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"},
            ],
        },
    }


def _role(name: str, pool: InferencePool) -> dict:
    """Read access to what the picker watches in its namespace: the pool, its pods, objectives and rewrites."""
    read = ["get", "list", "watch"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(name, pool),
        "rules": [
            {"apiGroups": ["inference.networking.k8s.io"], "resources": ["inferencepools"], "verbs": read},
            {"apiGroups": [""], "resources": ["pods"], "verbs": read},
            {
                "apiGroups": OBJECTIVE_GROUPS,
                "resources": ["inferenceobjectives", "inferencemodelrewrites"],
                "verbs": read,
            },
        ],
    }
