"""What `poolgate up` runs for a set of objects: simulated pods (from Deployments and Pods whose container is
`poolgate sim`), local vLLM processes (from Deployments and Pods whose container runs vLLM, see poolgate.up.vllm),
real model servers (Pods with a podIP), pickers (one per endpointPickerRef Service), Envoy.

Pure: objects and the previous plan in, the plan out. Loopback addresses are assigned once per pod, picker and Gateway
and kept across reloads, so an edit never moves what is already running."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from poolgate.api import Deployment, Gateway, InferencePool, KubeObject, Pod, Service, contract
from poolgate.api.core import Container
from poolgate.translate.ir import Address
from poolgate.translate.resolve import effective_picker_ref, is_managed
from poolgate.up import vllm

SIM_SUBCOMMAND = "sim"
PICKER_REPLICA_LABEL = "poolgate.dev/picker-replica-of"  # on the Pods the plan makes for a picker's replicas
# Loopback addresses of one run, in block B (0 by default; tests running side by side use other blocks):
# simulated pods from 127.B.0.10, pickers from 127.B.1.2, Gateways whose ports clash with another's from 127.B.2.2.


@dataclass(frozen=True)
class SimPod:
    """A simulated model-server pod: one `poolgate sim` process serving every port at one loopback address."""

    namespace: str
    name: str
    ip: str
    ports: tuple[int, ...]
    args: tuple[str, ...]  # arguments after `poolgate sim`, from the container spec

    @property
    def listens(self) -> tuple[str, ...]:
        return tuple(f"{self.ip}:{port}" for port in self.ports)


@dataclass(frozen=True)
class VllmPod:
    """A pod whose container runs vLLM: one local vLLM OpenAI server at one loopback address and port."""

    namespace: str
    name: str
    ip: str
    port: int
    args: tuple[str, ...]  # api_server arguments without host and port (poolgate.up.vllm.server_args)


@dataclass(frozen=True)
class PickerPlan:
    """A picker process serving the pools whose endpointPickerRef names one Service (one of its `replicas`)."""

    namespace: str
    service: str
    address: Address
    pools: tuple[str, ...]  # "namespace/name"
    profile: str
    replica: int = 0

    @property
    def child(self) -> str:
        """The process's name: picker/<namespace>/<service>, with /<replica> after it for replicas 1, 2, ..."""
        return f"picker/{self.namespace}/{self.service}" + (f"/{self.replica}" if self.replica else "")


@dataclass
class Plan:
    objects: list[KubeObject]  # what the translator and the pickers see
    sim_pods: list[SimPod]
    pickers: list[PickerPlan]
    bind_addresses: dict[tuple[str, str], str]  # Gateway -> listener address
    warnings: list[str] = field(default_factory=list)
    vllm_pods: list[VllmPod] = field(default_factory=list)


class Addresses:
    """Hands out loopback addresses from a start address, remembering who got which."""

    def __init__(self, start: str):
        self._next = ipaddress.ip_address(start)
        self._given: dict[str, str] = {}

    def get(self, key: str) -> str:
        if key not in self._given:
            self._given[key] = str(self._next)
            self._next += 1
        return self._given[key]


class Allocator:
    """The addresses of one `poolgate up` run (kept across reloads)."""

    def __init__(self, block: int = 0):
        if not 0 <= block <= 255:
            raise ValueError("the address block must be within 0..255")
        self.pods = Addresses(f"127.{block}.0.10")
        self.model_router = f"127.{block}.1.1"
        self.pickers = Addresses(f"127.{block}.1.2")
        self.gateways = Addresses(f"127.{block}.2.2")


def is_simulator(container: Container) -> bool:
    """Whether a container runs poolgate's simulator (`poolgate sim ...` as command or args)."""
    words = container.command + container.args
    return "poolgate" in container.image and SIM_SUBCOMMAND in words[:3]


def _sim_args(container: Container) -> tuple[str, ...]:
    words = container.command + container.args
    return tuple(words[words.index(SIM_SUBCOMMAND) + 1 :])


def _pool_ports(pools: list[InferencePool], namespace: str, labels: dict[str, str]) -> list[int]:
    ports: list[int] = []
    for pool in pools:
        if pool.namespace == namespace and all(labels.get(k) == v for k, v in pool.spec.selector.match_labels.items()):
            ports += [p.number for p in pool.spec.target_ports if p.number not in ports]
    return ports


def _ready_pod(namespace: str, name: str, labels: dict, annotations: dict, ip: str) -> Pod:
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


def make_plan(
    objects: list[KubeObject], allocator: Allocator, listener_address: str = "127.0.0.1", picker_replicas: int = 1
) -> Plan:
    """Plan the processes and loopback addresses for these objects, with `picker_replicas` processes per picker
    Service (more than one: the Service selects a ready Pod per replica, as a Deployment's would be)."""
    if picker_replicas < 1:
        raise ValueError("picker replicas must be at least 1")
    pools = [o for o in objects if isinstance(o, InferencePool)]
    kept: list[KubeObject] = []
    sims: list[SimPod] = []
    warnings: list[str] = []

    vllms: list[VllmPod] = []

    def add_pod(namespace: str, name: str, labels: dict, annotations: dict, container: Container) -> None:
        ports = [p.container_port for p in container.ports] or _pool_ports(pools, namespace, labels)
        if not ports:
            warnings.append(f"{namespace}/{name}: no containerPorts and no InferencePool selects it; not started")
            return
        if is_simulator(container):
            ip = allocator.pods.get(f"{namespace}/{name}")
            sims.append(SimPod(namespace, name, ip, tuple(ports), _sim_args(container)))
        else:
            try:
                args = vllm.server_args(container)
            except vllm.VllmArgsError as error:
                warnings.append(f"{namespace}/{name}: {error}; not started")
                return
            ip = allocator.pods.get(f"{namespace}/{name}")
            vllms.append(VllmPod(namespace, name, ip, ports[0], args))
        kept.append(_ready_pod(namespace, name, labels, annotations, ip))

    for obj in objects:
        if isinstance(obj, Deployment):
            template = obj.spec.template
            server = _model_server(template.spec.containers)
            if server is None:
                warnings.append(
                    f"{obj.ref}: no container runs `poolgate sim` or vLLM; poolgate up starts only those "
                    "(give other model servers as Pods with status.podIP)"
                )
                continue
            for i in range(obj.spec.replicas):
                labels, annotations = template.metadata.labels, template.metadata.annotations
                add_pod(obj.namespace, f"{obj.name}-{i}", labels, annotations, server)
        elif isinstance(obj, Pod) and not obj.status.pod_ip:
            server = _model_server(_containers(obj))
            if server is None:
                warnings.append(f"{obj.ref}: no status.podIP and no `poolgate sim` or vLLM container; ignored")
                continue
            add_pod(obj.namespace, obj.name, obj.metadata.labels, obj.metadata.annotations, server)
        elif not isinstance(obj, Service):
            kept.append(obj)

    services = {(o.namespace, o.name): o for o in objects if isinstance(o, Service)}
    pickers = _pickers(pools, services, allocator, picker_replicas)
    first_replicas = {(p.namespace, p.service): p for p in pickers if p.replica == 0}
    for key, service in sorted(services.items()):
        picker = first_replicas.get(key)
        kept.append(_picker_service(service, picker, picker_replicas) if picker is not None else service)
    for picker in first_replicas.values():  # a managed picker's Service exists only in the plan
        if (picker.namespace, picker.service) not in services:
            spec = {"ports": [{"port": picker.address.port}]}
            service = Service.model_validate(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": picker.service, "namespace": picker.namespace},
                    "spec": spec,
                }
            )
            kept.append(_picker_service(service, picker, picker_replicas))
    if picker_replicas > 1:
        for p in pickers:
            name, labels = f"{p.service}-replica-{p.replica}", {PICKER_REPLICA_LABEL: p.service}
            kept.append(_ready_pod(p.namespace, name, labels, {}, p.address.host))
    return Plan(kept, sims, pickers, _gateway_addresses(objects, allocator, listener_address), warnings, vllms)


def _model_server(containers: list[Container]) -> Container | None:
    """The container that serves the model: `poolgate sim` first, else vLLM."""
    return next((c for c in containers if is_simulator(c)), None) or next(
        (c for c in containers if vllm.runs_vllm(c)), None
    )


def _containers(pod: Pod) -> list[Container]:
    return [Container.model_validate(c) for c in pod.spec.get("containers", []) if isinstance(c, dict)]


def _picker_service(service: Service, picker: PickerPlan, replicas: int) -> Service:
    """A picker Service as the plan runs it: its cluster IP the first replica's address and, with several replicas,
    selecting the replicas' Pods on the Service's port."""
    update: dict = {"cluster_ip": picker.address.host}
    if replicas > 1:
        update["selector"] = {PICKER_REPLICA_LABEL: picker.service}
        update["ports"] = [port.model_copy(update={"target_port": None}) for port in service.spec.ports]
    return service.model_copy(update={"spec": service.spec.model_copy(update=update)})


def _pickers(pools: list[InferencePool], services: dict, allocator: Allocator, replicas: int) -> list[PickerPlan]:
    by_service: dict[tuple[str, str, int], list[InferencePool]] = {}
    for pool in sorted(pools, key=lambda p: (p.namespace, p.name)):
        ref = effective_picker_ref(pool)
        if ref is None or (ref.group, ref.kind) != ("", "Service"):
            continue
        if (pool.namespace, ref.name) not in services and not is_managed(pool):
            continue  # a missing picker Service stays missing: the translator reports it
        assert ref.port is not None  # validation requires a port when kind is Service
        by_service.setdefault((pool.namespace, ref.name, ref.port.number), []).append(pool)
    out = []
    for (namespace, service, port), served in sorted(by_service.items()):
        profile = next(
            (
                p.metadata.annotations[contract.PROFILE_ANNOTATION]
                for p in served
                if contract.PROFILE_ANNOTATION in p.metadata.annotations
            ),
            "poolgate-default",
        )
        pool_names = tuple(f"{p.namespace}/{p.name}" for p in served)
        for replica in range(replicas):
            key = f"{namespace}/{service}" + (f"/{replica}" if replica else "")
            address = Address(allocator.pickers.get(key), port)
            out.append(PickerPlan(namespace, service, address, pool_names, profile, replica))
    return out


def _gateway_addresses(objects: list[KubeObject], allocator: Allocator, listener_address: str) -> dict:
    taken: set[tuple[str, int]] = set()
    out = {}
    for gw in sorted((o for o in objects if isinstance(o, Gateway)), key=lambda g: (g.namespace, g.name)):
        ports = {listener.port for listener in gw.spec.listeners}
        address = listener_address
        if any((address, port) in taken for port in ports):
            address = allocator.gateways.get(f"{gw.namespace}/{gw.name}")
        taken |= {(address, port) for port in ports}
        out[(gw.namespace, gw.name)] = address
    return out
