"""The standalone gateway: real Envoy, pickers and model servers on loopback, from Kubernetes-shaped YAML files.

`Stack.start()` plans the processes (poolgate.up.plan), starts the model servers, then (once they answer, as a
cluster lists only ready pods as endpoints) the pickers and Envoy, and writes Envoy's listeners and clusters into a
watched directory; `Stack.reload()` re-reads the files and applies the
difference without restarting what did not change (Envoy reloads its configuration in place); `Stack.stop()` stops
every child process."""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from poolgate.api import contract, load_files
from poolgate.envoy import envoy_binary
from poolgate.translate import TranslateOptions, Translation, translate, xds
from poolgate.translate.ir import Address
from poolgate.translate.output import swap_directory, write_yaml
from poolgate.up import vllm
from poolgate.up.plan import Allocator, Plan, make_plan
from poolgate.up.processes import (
    POOLGATE,
    Spec,
    StateLock,
    Supervisor,
    check_port_free,
    free_port,
    wait_for_port,
    wait_until,
)

log = logging.getLogger("poolgate.up")
PICKER_HEALTH_PORT = 9003
PICKER_METRICS_PORT = 9090
SERVING_WAVE = 1  # pickers and Envoy start once the model servers answer: in a cluster, only ready pods are endpoints


@dataclass
class StackOptions:
    state_dir: Path = Path(".poolgate/up")
    listener_address: str = "127.0.0.1"
    body_mode: Literal["FULL_DUPLEX_STREAMED", "BUFFERED"] = "FULL_DUPLEX_STREAMED"
    envoy_log_level: str = "warn"
    sim_args: tuple[str, ...] = ()  # extra `poolgate sim` arguments for every simulated pod
    picker_args: tuple[str, ...] = ()  # extra `poolgate picker` arguments for every picker
    picker_replicas: int = 1  # picker processes per picker Service (Envoy spreads the picker calls over them)
    ready_timeout: float = 30.0
    address_block: int = 0  # loopback block of pods and pickers (see poolgate.up.plan)
    translate: dict = field(default_factory=dict)  # other TranslateOptions fields (e.g. request_timeout_s)
    picker_tls: bool = True  # pickers serve TLS (self-signed unless picker_cert_dir), Envoy speaks it; as upstream
    picker_cert_dir: Path | None = None  # tls.crt + tls.key for the pickers; Envoy checks them against ca.crt
    # there (or tls.crt itself when there is no ca.crt)


@dataclass
class Status:
    """What a start or reload did, for the live summary."""

    plan: Plan
    translation: Translation
    started: list[str] = field(default_factory=list)
    at: float = field(default_factory=time.time)


class Stack:
    """One standalone gateway (see the module docstring)."""

    def __init__(self, files: list[str | Path], options: StackOptions | None = None):
        self.files = [Path(f) for f in files]
        self.options = options or StackOptions()
        state = self.options.state_dir.resolve()
        self.state_dir = state
        self.xds_dir = state / "xds"
        self.objects_file = state / "objects.yaml"
        self.supervisor = Supervisor(state / "logs")
        self.allocator = Allocator(self.options.address_block)
        self.admin = Address("127.0.0.1", free_port())
        self.model_router = Address(self.allocator.model_router, free_port(self.allocator.model_router))
        self.lock = StateLock(state)
        self.status: Status | None = None

    @classmethod
    def from_objects(
        cls, objects: list[dict], directory: Path, block: int, name: str | None = None, **options
    ) -> Stack:
        """A stack (not started) serving raw objects (dicts) from loopback block `block` (127.B.x.y, see
        poolgate.up.plan), with its objects file and state under `directory`. A Gateway listener port 0 is replaced,
        in the given dicts, by a free port of the stack's listener address 127.B.2.1. `name` (default: the block)
        names the objects file and state directory; `options` are other StackOptions fields."""
        listener = f"127.{block}.2.1"
        for obj in objects:
            if obj.get("kind") == "Gateway":
                for item in obj["spec"]["listeners"]:
                    if item["port"] == 0:
                        item["port"] = free_port(listener)
        name = name or str(block)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"objects-{name}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        return cls(
            [path],
            StackOptions(
                state_dir=directory / f"state-{name}", listener_address=listener, address_block=block, **options
            ),
        )

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> Status:
        """Plan and start everything; raises InvalidObjects for bad input and RuntimeError if a process fails."""
        self.lock.acquire()  # raises when another poolgate up runs from the same state directory
        try:
            return self._apply(start_envoy=True)
        except BaseException:
            self.stop()
            raise

    def reload(self) -> Status:
        """Re-read the files and apply the changes; on invalid input the running gateway is left as it was."""
        return self._apply(start_envoy=False)

    def stop(self) -> None:
        """Stop every child process (Envoy first, so no request reaches a stopping picker or pod)."""
        if "envoy" in self.supervisor.children:
            self.supervisor.stop("envoy")
        self.supervisor.stop_all()
        self.lock.release()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what runs ----------------------------------------------------------------------------------------------

    def gateway_urls(self) -> dict[str, list[str]]:
        """`namespace/name` -> the `http://HOST:PORT` of each listener port of each of poolgate's Gateways."""
        if self.status is None:
            return {}
        out: dict[str, list[str]] = {}
        for lst in self.status.translation.ir.listeners:
            host = self.status.translation.options.bind_address(lst.gateway_namespace, lst.gateway_name)
            out.setdefault(f"{lst.gateway_namespace}/{lst.gateway_name}", []).append(f"http://{host}:{lst.port}")
        return out

    def options_for(self, plan: Plan) -> TranslateOptions:
        return TranslateOptions(
            endpoints="static",
            bind_addresses=plan.bind_addresses,
            listener_address=self.options.listener_address,
            admin_address=self.admin,
            model_router=self.model_router,
            body_mode=self.options.body_mode,
            picker_tls=self._picker_tls,
            picker_ca=self._picker_ca(),
            **{
                "poolgate_pickers": True,  # every pool's picker is one this stack runs
                # conformance steering reports the pick in response headers: the picker must edit responses
                "picker_edits_responses": "--enable-conformance-steering" in self.options.picker_args,
                **self.options.translate,
            },
        )

    @property
    def _picker_tls(self) -> bool:
        return self.options.picker_tls or self.options.picker_cert_dir is not None

    def _picker_ca(self) -> str | None:
        directory = self.options.picker_cert_dir
        if directory is None:
            return None
        ca = Path(directory).resolve() / "ca.crt"
        return str(ca if ca.exists() else ca.with_name("tls.crt"))

    def _picker_tls_args(self) -> tuple[str, ...]:
        if not self._picker_tls:
            return ("--secure-serving=false",)
        if self.options.picker_cert_dir is None:
            return ("--secure-serving",)
        return ("--secure-serving", "--cert-path", str(Path(self.options.picker_cert_dir).resolve()))

    def _apply(self, start_envoy: bool) -> Status:
        objects = load_files(self.files)  # raises InvalidObjects, naming object and field
        plan = make_plan(objects, self.allocator, self.options.listener_address, self.options.picker_replicas)
        translation = translate(plan.objects, self.options_for(plan))
        conflicts = translation.bind_conflicts()
        if conflicts:
            raise RuntimeError("; ".join(conflicts))
        self._check_new_ports_free(translation)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(
            self.objects_file, {"apiVersion": "v1", "kind": "List", "items": [o.to_json() for o in plan.objects]}
        )
        loaded = self._envoy_updates()
        swap_directory(self.xds_dir, translation.discovery_files())
        desired = self._children(plan, translation)
        if not start_envoy and "envoy" not in self.supervisor.children:
            desired.pop("envoy")
        started = self.supervisor.reconcile(desired, self.options.ready_timeout)
        if loaded is not None:
            self._wait_for_envoy(loaded)
        self._wait_for_listeners(translation)
        self.status = Status(plan, translation, started)
        for warning in plan.warnings:
            log.warning(warning)
        return self.status

    def _check_new_ports_free(self, translation) -> None:
        """Refuse listener ports another process holds (ports this stack's Envoy already serves are not checked)."""
        ours = set()
        if self.status is not None and "envoy" in self.supervisor.children:
            ours = set(self._listen_addresses(self.status.translation))
        for host, port in self._listen_addresses(translation):
            if (host, port) not in ours:
                check_port_free(host, port)

    @staticmethod
    def _listen_addresses(translation) -> list[tuple[str, int]]:
        options = translation.options
        return [
            (options.bind_address(lst.gateway_namespace, lst.gateway_name), lst.port)
            for lst in translation.ir.listeners
        ]

    def envoy_stats(self, pattern: str) -> dict[str, int]:
        """Envoy's counters and gauges whose names match the regular expression `pattern` (its admin /stats)."""
        query = urllib.parse.urlencode({"filter": pattern})
        url = f"http://{self.admin.host}:{self.admin.port}/stats?{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        return {name: int(value) for name, _, value in (line.partition(": ") for line in lines) if value.isdigit()}

    def _envoy_updates(self) -> dict[str, int] | None:
        """Envoy's counts of listener and cluster file loads (attempted, rejected); None while Envoy is not running."""
        if "envoy" not in self.supervisor.children:
            return None
        return self._envoy_update_counts()

    def _envoy_update_counts(self) -> dict[str, int]:
        """Envoy's counts of listener and cluster file loads (attempted, rejected)."""
        return self.envoy_stats(r"[lc]ds\.update_(attempt|rejected)$")

    def _wait_for_envoy(self, before: dict[str, int]) -> None:
        """Wait until Envoy has loaded the swapped files (each swap makes it load both once), so that a reload
        returns with the new configuration in force; raise if Envoy rejected it."""
        attempts = [name for name in before if name.endswith("attempt")]
        wait_until(
            lambda: all(self._envoy_update_counts()[name] > before[name] for name in attempts),
            timeout=self.options.ready_timeout,
            message="Envoy loading the new configuration",
        )
        after = self._envoy_update_counts()
        rejected = [name for name in after if name.endswith("rejected") and after[name] > before.get(name, 0)]
        if rejected:
            raise RuntimeError(
                f"Envoy rejected the new configuration ({', '.join(rejected)}); it keeps the previous "
                f"one. See {self.supervisor.children['envoy'].log_path}"
            )

    def _wait_for_listeners(self, translation: Translation) -> None:
        """Envoy answers on its admin port before it has bound the listeners of its watched files: wait until every
        listener accepts connections, so a started or reloaded stack is ready to serve."""
        envoy = self.supervisor.children.get("envoy")
        if envoy is None:
            return
        for lst in translation.ir.listeners:
            wait_for_port(
                translation.options.bind_address(lst.gateway_namespace, lst.gateway_name),
                lst.port,
                timeout=self.options.ready_timeout,
                process=envoy,
            )

    def _children(self, plan: Plan, translation: Translation) -> dict[str, Spec]:
        children: dict[str, Spec] = {}
        for pod in plan.sim_pods:
            argv = (
                *POOLGATE,
                "sim",
                *pod.args,
                *self.options.sim_args,
                *(arg for listen in pod.listens for arg in ("--listen", listen)),
            )
            children[f"pod/{pod.namespace}/{pod.name}"] = Spec(argv, (pod.ip, pod.ports[0]))
        if plan.vllm_pods:
            python = vllm.python_executable()
            if python is None:
                names = ", ".join(f"{pod.namespace}/{pod.name}" for pod in plan.vllm_pods)
                raise RuntimeError(
                    f"{names} run vLLM, which is not installed here: run `make vllm-venv` (creates {vllm.VENV}) "
                    f"or set {vllm.PYTHON_ENV} to a Python that has vllm"
                )
            threads = (os.cpu_count() or 1) // len(plan.vllm_pods)  # the machine's cores shared by the engines
            for engine in plan.vllm_pods:
                children[f"pod/{engine.namespace}/{engine.name}"] = Spec(
                    vllm.server_argv(python, engine.ip, engine.port, engine.args),
                    (engine.ip, engine.port),
                    env=tuple(sorted(vllm.server_env(threads).items())),
                    health_path=vllm.HEALTH_PATH,
                    ready_timeout=vllm.READY_TIMEOUT,
                )
        for picker in plan.pickers:
            peers = [
                f"{other.address.host}:{contract.LOAD_EXCHANGE_PORT}"
                for other in plan.pickers
                if (other.namespace, other.service) == (picker.namespace, picker.service) and other is not picker
            ]
            exchange = (contract.LOAD_EXCHANGE_PEERS_FLAG, ",".join(peers)) if peers else ()
            argv = (
                *POOLGATE,
                "picker",
                "--objects-file",
                str(self.objects_file),
                "--profile",
                picker.profile,
                "--grpc-host",
                picker.address.host,
                "--grpc-port",
                str(picker.address.port),
                "--grpc-health-port",
                str(PICKER_HEALTH_PORT),
                "--metrics-port",
                str(PICKER_METRICS_PORT),
                *(arg for pool in picker.pools for arg in ("--pool", pool)),
                *exchange,  # replicas of one picker share their load (on the default port of their own addresses)
                *self._picker_tls_args(),
                *self.options.picker_args,
            )
            children[picker.child] = Spec(argv, (picker.address.host, picker.address.port), wave=SERVING_WAVE)
        if any(lst.model_router is not None for lst in translation.ir.listeners):
            argv = (
                *POOLGATE,
                "picker",
                "--role",
                "model-router",
                "--secure-serving=false",  # the model router's cluster is plaintext loopback
                "--grpc-host",
                self.model_router.host,
                "--grpc-port",
                str(self.model_router.port),
                "--grpc-health-port",
                str(free_port(self.model_router.host)),
                "--metrics-port",
                str(free_port(self.model_router.host)),
            )
            children["model-router"] = Spec(argv, (self.model_router.host, self.model_router.port), wave=SERVING_WAVE)
        bootstrap = self.state_dir / "bootstrap.yaml"
        write_yaml(bootstrap, xds.dynamic_bootstrap(str(self.xds_dir), translation.options))
        # When a reload replaces a listener, Envoy drains the old one's connections. Its default (gradual) strategy
        # lets kept-alive client connections serve the old routes for minutes; `immediate` closes each after its
        # response in flight, so clients reconnect to the new configuration at once (streams are not cut).
        children["envoy"] = Spec(
            (
                envoy_binary(),
                "-c",
                str(bootstrap),
                "--log-level",
                self.options.envoy_log_level,
                "--disable-hot-restart",
                "--drain-strategy",
                "immediate",
            ),
            (self.admin.host, self.admin.port),
            wave=SERVING_WAVE,
        )
        return children
