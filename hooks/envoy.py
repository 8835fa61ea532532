"""The Kubernetes objects that run one Gateway's Envoy: a ConfigMap of Envoy configuration, a Deployment (Envoy plus
the model-router sidecar) and a Service; and what the observed Deployment and Service say about the data plane.

Envoy loads listeners and clusters from `lds.yaml` and `cds.yaml` in its ConfigMap volume and watches the directory:
the kubelet swaps a ConfigMap volume's `..data` link atomically, so a route change reaches Envoy without a restart.
Only a change of the bootstrap itself (rare) rolls the pods, through a hash in the pod template."""

from __future__ import annotations

import hashlib

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf.any_pb2 import Any

from hooks.raw import integer, items, mapping
from hooks.settings import HookSettings
from poolgate.api.contract import BOOTSTRAP_HASH_ANNOTATION
from poolgate.translate import GatewayRuntime, TranslateOptions, xds
from poolgate.translate.naming import dns_label
from poolgate.translate.output import to_yaml

CONFIG_DIR = "/etc/poolgate/envoy"
READY_PORT = 19001  # Envoy answers GET /ready here for the kubelet (admin stays on loopback)
MODEL_ROUTER_PORT = 9004  # the model-router sidecar, reached by Envoy on 127.0.0.1
MODEL_ROUTER_HEALTH_PORT = 19003  # its gRPC health (probed by the kubelet) and metrics: ports a listener cannot use
MODEL_ROUTER_METRICS_PORT = 19004
UNPRIVILEGED_PORTS_SYSCTL = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}  # bind :80 as non-root
NON_ROOT_UID = 65532


def envoy_name(gateway: str) -> str:
    """Name of the ConfigMap, Deployment and Service that serve a Gateway."""
    return dns_label(gateway, "envoy")


def selector(gateway: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "poolgate-envoy", "gateway.networking.k8s.io/gateway-name": dns_label(gateway)}


def labels(gateway: str) -> dict[str, str]:
    return {**selector(gateway), "app.kubernetes.io/component": "gateway", "app.kubernetes.io/managed-by": "poolgate"}


def options(settings: HookSettings) -> TranslateOptions:
    """How Gateways are translated in Kubernetes: pool endpoints from each pool's headless Service (DNS); managed
    pools' pickers are poolgate's, with the installation's replica count (which decides where their responses go)."""
    return TranslateOptions(
        endpoints="dns", cluster_domain=settings.cluster_domain, managed_picker_replicas=settings.picker_replicas
    )


def bootstrap(settings: HookSettings, config_dir: str = CONFIG_DIR) -> dict:
    """Envoy's bootstrap: listeners and clusters from watched files in `config_dir`, plus the readiness listener."""
    out = xds.dynamic_bootstrap(config_dir, options(settings))
    out["static_resources"] = {"listeners": [xds.to_dict(_ready_listener())]}
    return out


def _any(message) -> Any:
    packed = Any()
    packed.Pack(message)
    return packed


def _ready_listener() -> listener_pb2.Listener:
    """A listener on READY_PORT that answers GET /ready with 200 once Envoy serves (503 while it drains)."""
    health = health_check_pb2.HealthCheck(
        headers=[
            route_components_pb2.HeaderMatcher(name=":path", string_match=string_pb2.StringMatcher(exact="/ready"))
        ]
    )
    health.pass_through_mode.value = False
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="poolgate_ready",
        route_config=route_pb2.RouteConfiguration(
            name="poolgate/ready",
            virtual_hosts=[route_components_pb2.VirtualHost(name="poolgate/ready", domains=["*"])],
        ),
        http_filters=[
            hcm_pb2.HttpFilter(name="envoy.filters.http.health_check", typed_config=_any(health)),
            hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router())),
        ],
    )
    return listener_pb2.Listener(
        name="poolgate/ready",
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=READY_PORT)),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_any(hcm)
                    )
                ]
            )
        ],
    )


def envoy_args(config_dir: str = CONFIG_DIR, log_level: str = "info") -> list[str]:
    """Arguments of the Envoy container (after the `envoy` command)."""
    return ["-c", f"{config_dir}/bootstrap.yaml", "--disable-hot-restart", "--log-level", log_level]


def model_router_args() -> list[str]:
    """Arguments of the model-router sidecar (after the image's `poolgate` entrypoint). It listens on every address
    of the pod: the kubelet's gRPC probes come from outside the pod; the Gateway's Service exposes none of its ports."""
    return [
        "picker",
        "--role",
        "model-router",
        "--secure-serving=false",  # Envoy reaches its model-router sidecar in plaintext within the pod
        "--grpc-host",
        "0.0.0.0",
        "--grpc-port",
        str(MODEL_ROUTER_PORT),
        "--grpc-health-port",
        str(MODEL_ROUTER_HEALTH_PORT),
        "--metrics-port",
        str(MODEL_ROUTER_METRICS_PORT),
    ]


def objects(
    gateway: str, namespace: str, ports: list[int], discovery_files: dict[str, dict], settings: HookSettings
) -> list[dict]:
    """The ConfigMap, Deployment and Service (when some listener is valid) that run this Gateway's Envoy."""
    name = envoy_name(gateway)
    files = {"bootstrap.yaml": bootstrap(settings), **discovery_files}
    data = {file: to_yaml(canonical(content)) for file, content in sorted(files.items())}
    out = [_config_map(name, namespace, gateway, data), _deployment(name, namespace, gateway, ports, data, settings)]
    if ports:
        out.append(_service(name, namespace, gateway, ports, settings))
    return out


def canonical(data: object) -> object:
    """`data` with every mapping's keys in sorted order. ConfigMap text is written canonically so it changes only
    when the configuration does: key order coming from protobuf maps differs between processes (hash seeds), and
    hook replicas answering with differently ordered text would rewrite the ConfigMap back and forth."""
    if isinstance(data, dict):
        return {key: canonical(data[key]) for key in sorted(data)}
    if isinstance(data, list):
        return [canonical(item) for item in data]
    return data


def _metadata(name: str, namespace: str, gateway: str) -> dict:
    return {"name": name, "namespace": namespace, "labels": labels(gateway)}


def _config_map(name: str, namespace: str, gateway: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name, namespace, gateway), "data": data}


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _deployment(
    name: str, namespace: str, gateway: str, ports: list[int], data: dict[str, str], settings: HookSettings
) -> dict:
    bootstrap_hash = hashlib.sha256(data["bootstrap.yaml"].encode()).hexdigest()[:16]
    envoy = {
        "name": "envoy",
        "image": settings.envoy_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["envoy"],
        "args": envoy_args(log_level=settings.envoy_log_level),
        "ports": [{"name": f"http-{port}", "containerPort": port, "protocol": "TCP"} for port in ports]
        + [{"name": "ready", "containerPort": READY_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": READY_PORT},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "resources": settings.resources("envoy"),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    model_router = {
        "name": "model-router",
        "image": settings.poolgate_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": model_router_args(),
        "ports": [
            {"name": "router-health", "containerPort": MODEL_ROUTER_HEALTH_PORT, "protocol": "TCP"},
            {"name": "router-metrics", "containerPort": MODEL_ROUTER_METRICS_PORT, "protocol": "TCP"},
        ],
        # Not ready: the pod leaves the Gateway's Service (Envoy would answer 503 to routes that need the router);
        # not live for 30 s: the kubelet restarts the router.
        "readinessProbe": {
            "grpc": {"port": MODEL_ROUTER_HEALTH_PORT, "service": "readiness"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "grpc": {"port": MODEL_ROUTER_HEALTH_PORT, "service": "liveness"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": settings.resources("model_router"),
        "securityContext": _container_security(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, gateway),
        "spec": {
            "replicas": settings.envoy_replicas,
            "selector": {"matchLabels": selector(gateway)},
            "template": {
                "metadata": {"labels": labels(gateway), "annotations": {BOOTSTRAP_HASH_ANNOTATION: bootstrap_hash}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": NON_ROOT_UID,
                        "runAsGroup": NON_ROOT_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                        "sysctls": [UNPRIVILEGED_PORTS_SYSCTL],
                    },
                    "containers": [envoy, model_router],
                    "volumes": [{"name": "config", "configMap": {"name": name}}],
                },
            },
        },
    }


def _service(name: str, namespace: str, gateway: str, ports: list[int], settings: HookSettings) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, gateway),
        "spec": {
            "type": settings.gateway_service_type,
            "selector": selector(gateway),
            "ports": [{"name": f"http-{port}", "port": port, "targetPort": port, "protocol": "TCP"} for port in ports],
        },
    }


# --- what the observed objects say ---------------------------------------------------------------------------------


def runtime(deployment: dict | None, service: dict | None, namespace: str, gateway: str) -> GatewayRuntime:
    """Programmed when the Envoy Deployment is available at its current generation and the Service has an
    address; the addresses come from the Service (load-balancer ingress, else its cluster IP)."""
    where = f"{namespace}/{envoy_name(gateway)}"
    addresses = _addresses(service)
    if deployment is None:
        return GatewayRuntime(addresses, False, f"waiting for Deployment {where} to be created")
    status = mapping(deployment.get("status"))
    available = any(
        isinstance(cond, dict) and cond.get("type") == "Available" and cond.get("status") == "True"
        for cond in items(status.get("conditions"))
    )
    ready = integer(status.get("availableReplicas"))
    wanted = integer(mapping(deployment.get("spec")).get("replicas"), default=1)
    generation = integer(mapping(deployment.get("metadata")).get("generation"))
    current = integer(status.get("observedGeneration")) >= generation
    if not current:
        return GatewayRuntime(addresses, False, f"waiting for Deployment {where} to roll out its latest spec")
    if not (available and ready > 0):
        return GatewayRuntime(
            addresses, False, f"waiting for Deployment {where}: {ready} of {wanted} Envoy replicas available"
        )
    if not addresses:
        return GatewayRuntime(addresses, False, f"waiting for Service {where} to get an address")
    return GatewayRuntime(
        addresses, True, f"Envoy is serving: {ready} of {wanted} replicas of Deployment {where} available"
    )


def _addresses(service: dict | None) -> tuple[str, ...]:
    if service is None:
        return ()
    spec = mapping(service.get("spec"))
    if spec.get("type") == "LoadBalancer":
        ingress = items(mapping(mapping(service.get("status")).get("loadBalancer")).get("ingress"))
        found = [entry.get("ip") or entry.get("hostname") for entry in ingress if isinstance(entry, dict)]
    else:
        found = [spec.get("clusterIP")]
    return tuple(dict.fromkeys(a for a in found if isinstance(a, str) and a and a != "None"))
