"""`poolgate picker`: arguments, and the real process (readiness, metrics, shutdown, unusable input)."""

import os
import signal
import socket
import subprocess
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from picker.cli import options_from_args
from poolgate.cli import build_parser
from tests.support.processes import POOLGATE, Processes, free_port, wait_for_port

POOL = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  selector: {matchLabels: {app: pool}}
  targetPorts: [{number: 8000}]
"""


def parse(*argv: str):
    return options_from_args(build_parser().parse_args(["picker", *argv]))


def test_upstream_flags_and_defaults():
    options = parse("--pool-name", "llama", "--pool-namespace", "team", "--refresh-metrics-interval", "200ms")
    assert (options.grpc_port, options.health_port, options.metrics_port) == (9002, 9003, 9090)
    assert options.pools == ["team/llama"] and options.refresh_metrics_interval == 0.2
    # no --fallbacks: each profile's picker says how many endpoints it sends (maxNumOfEndpoints)
    assert (options.role, options.fallbacks, options.max_body_bytes) == ("endpoint-picker", None, 10 * 1024 * 1024)
    options = parse(
        "--pool",
        "a/one",
        "--pool",
        "b/two",
        "--metrics-port",
        "-1",
        "--role",
        "both",
        "--grpc-host",
        "127.0.1.2",
        "--enable-conformance-steering",
    )
    assert options.pools == ["a/one", "b/two"] and options.metrics_port is None and options.role == "both"
    assert options.host == "127.0.1.2" and options.conformance_steering
    assert parse("--objects-file", "x.yaml").pools is None  # every pool of the file
    assert parse("--role", "model-router").pools is None  # the router needs no pool


@pytest.mark.parametrize(
    "argv, message",
    [
        ((), "name the pool"),
        (("--pool", "no-namespace"), "NAMESPACE/NAME"),
        (("--pool-name", "p", "--pool-group", "inference.networking.x-k8s.io"), "--pool-group"),
        (("--pool-name", "p", "--secure-serving=false", "--cert-path", "/tmp"), "--secure-serving"),
        (("--pool-name", "p", "--fallbacks", "-1"), "--fallbacks"),
        (("--pool-name", "p", "--max-body-bytes", "0"), "--max-body-bytes"),
    ],
)
def test_inconsistent_arguments_are_refused_with_a_reason(argv, message):
    with pytest.raises(ValueError, match=message):
        parse(*argv)


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["picker", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--grpc-port",
        "--grpc-health-port",
        "--metrics-port",
        "--pool-name",
        "--pool-namespace",
        "--config-file",
        "--refresh-metrics-interval",
        "--secure-serving",
        "--objects-file",
        "--profile",
        "--role",
        "--fallbacks",
        "--max-body-bytes",
        "x-gateway-destination-endpoint",
        "413",
        "429",
    ):
        assert flag in text, flag


def test_the_process_gets_ready_serves_metrics_and_stops_cleanly_on_sigterm(tmp_path):
    objects = tmp_path / "objects.yaml"
    objects.write_text(POOL)
    host = "127.0.1.60"
    grpc_port, health_port, metrics_port = free_port(host), free_port(host), free_port(host)
    with Processes(tmp_path / "logs") as processes:
        picker = processes.start(
            "picker",
            [
                *POOLGATE,
                "picker",
                "--objects-file",
                str(objects),
                "--grpc-host",
                host,
                "--grpc-port",
                str(grpc_port),
                "--grpc-health-port",
                str(health_port),
                "--metrics-port",
                str(metrics_port),
            ],
        )
        wait_for_port(host, health_port, process=picker)
        with grpc.insecure_channel(f"{host}:{health_port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="readiness"), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        wait_for_port(host, metrics_port, process=picker)
        text = urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'inference_pool_ready_pods{name="pool"} 0.0' in text
        picker.popen.send_signal(signal.SIGTERM)
        assert picker.popen.wait(10) == 0
        assert '"msg":"picker stopping"' in picker.output()


@pytest.mark.parametrize(
    "contents, message",
    [
        (POOL.replace("targetPorts: [{number: 8000}]", "targetPorts: []"), "InferencePool default/pool"),
        ("key: [unclosed", "invalid YAML"),
    ],
)
def test_an_unusable_objects_file_exits_2_naming_the_problem(tmp_path, contents, message):
    objects = tmp_path / "objects.yaml"
    objects.write_text(contents)
    result = subprocess.run(
        [*POOLGATE, "picker", "--objects-file", str(objects), "--grpc-host", "127.0.1.61", "--metrics-port", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and message in result.stderr


def test_a_taken_port_or_a_missing_kubernetes_configuration_exits_2_with_a_reason(tmp_path):
    objects = tmp_path / "objects.yaml"
    objects.write_text(POOL)
    host = "127.0.1.62"
    with socket.socket() as taken:
        taken.bind((host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *POOLGATE,
                "picker",
                "--objects-file",
                str(objects),
                "--grpc-host",
                host,
                "--grpc-port",
                str(port),
                "--metrics-port",
                "-1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2 and f"cannot listen on {host}:{port}" in result.stderr
    result = subprocess.run(
        [*POOLGATE, "picker", "--pool-name", "pool", "--grpc-host", host, "--metrics-port", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2 and "no Kubernetes configuration" in result.stderr
