"""The Envoy ConfigMap a Gateway gets runs in the real Envoy binary with the container's arguments, reports ready on
the readiness port, and picks up new listeners when its directory is swapped the way the kubelet updates a ConfigMap
volume (no restart)."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hooks import envoy, gateway
from hooks.settings import HookSettings
from poolgate.envoy import envoy_binary
from poolgate.translate.output import swap_directory
from tests.hooks import cases
from tests.support.hookenvoy import local_files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_files(listener_port: int, config_dir: str, admin_port: int, ready_port: int) -> dict[str, object]:
    """The Gateway's ConfigMap files for gw-b listening on `listener_port`, with the bootstrap pointed at
    `config_dir` and admin/readiness moved to free ports (the only changes from the cluster's files)."""
    request = copy.deepcopy(cases.all_cases()["gateways/sync/two-gateways-b"])
    request["object"]["spec"]["listeners"][0]["port"] = listener_port
    return local_files(gateway.sync(request, HookSettings()), Path(config_dir), admin_port, ready_port)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


def wait_for(predicate, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_config_map_runs_in_envoy_and_reloads_on_an_atomic_swap(tmp_path):
    config_dir = tmp_path / "envoy"
    admin, ready, first, second = free_port(), free_port(), free_port(), free_port()
    swap_directory(config_dir, config_files(first, str(config_dir), admin, ready))
    process = subprocess.Popen(
        [envoy_binary(), *envoy.envoy_args(str(config_dir), "warning")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{ready}/ready")[0] == 200)
        listeners = get(f"http://127.0.0.1:{admin}/listeners")[1]
        assert f"poolgate/default/gw-b/{first}::0.0.0.0:{first}" in listeners
        swap_directory(config_dir, config_files(second, str(config_dir), admin, ready))
        listeners = wait_for(
            lambda: (
                (text := get(f"http://127.0.0.1:{admin}/listeners")[1])
                and f"gw-b/{second}::" in text
                and f"gw-b/{first}::" not in text
                and text
            )
        )
        assert f"poolgate/default/gw-b/{second}::0.0.0.0:{second}" in listeners
        assert process.poll() is None
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert "error" not in output.lower(), output


def test_model_router_sidecar_serves_the_health_services_its_probes_ask_for():
    """The sidecar's own arguments (ports moved to free ones): the kubelet's gRPC probes get SERVING from the
    `readiness` and `liveness` services; and Envoy's filter that calls it fails closed with 503."""
    deployment = next(
        a
        for a in gateway.sync(cases.all_cases()["gateways/sync/two-gateways-b"], HookSettings())["attachments"]
        if a["kind"] == "Deployment"
    )
    sidecar = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "model-router")
    assert sidecar["args"] == envoy.model_router_args()
    ports = {str(envoy.MODEL_ROUTER_PORT): free_port(), str(envoy.MODEL_ROUTER_HEALTH_PORT): free_port()}
    ports[str(envoy.MODEL_ROUTER_METRICS_PORT)] = free_port()
    args = [str(ports.get(arg, arg)) for arg in sidecar["args"]]
    process = subprocess.Popen([sys.executable, "-m", "poolgate.cli", *args], stderr=subprocess.PIPE)
    health = str(ports[str(envoy.MODEL_ROUTER_HEALTH_PORT)])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{health}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for probe in ("readinessProbe", "livenessProbe"):
                assert sidecar[probe]["grpc"]["port"] == envoy.MODEL_ROUTER_HEALTH_PORT
                service = sidecar[probe]["grpc"]["service"]
                answer = wait_for(lambda s=service: _check(stub, s), timeout_s=60)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.terminate()
        process.wait(timeout=30)
    answer = gateway.sync(cases.all_cases()["gateways/sync/two-gateways-a"], HookSettings())  # routes by model
    lds = next(a for a in answer["attachments"] if a["kind"] == "ConfigMap")["data"]["lds.yaml"]
    router = next(
        f["typed_config"]
        for listener in yaml.safe_load(lds)["resources"]
        for chain in listener["filter_chains"]
        for hcm in chain["filters"]
        for f in hcm["typed_config"].get("http_filters", [])
        if "model-router" in json.dumps(f)
    )
    assert (
        router.get("failure_mode_allow", False) is False and router["status_on_error"]["code"] == "ServiceUnavailable"
    )


def _check(stub, service: str):
    try:
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
    except grpc.RpcError:
        return None
