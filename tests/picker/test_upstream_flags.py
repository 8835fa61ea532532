"""`poolgate picker` as a drop-in for the upstream picker's command line (llm-d router v0.10 / GIE v1.5 chart):
pflag syntax and defaults, flags accepted but not acted on, TLS by default, and /metrics authentication."""

import asyncio
import os
import ssl
import urllib.error
import urllib.request

import grpc
import orjson
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from picker.cli import log_settings, options_from_args
from picker.flags import UNUSED_FLAGS, unused_flag_report
from picker.server.app import Picker, PickerOptions
from poolgate.cli import build_parser
from tests.support.extproc import ExtProcStream, header_values, request_body, request_headers
from tests.support.kubeapi import FakeApiServer
from tests.support.processes import POOLGATE, Processes, free_port, wait_for_port
from tests.support.upstream import UPSTREAM_CONFIGS

CHART_CONFIG = UPSTREAM_CONFIGS / "llm-d-router-v0.10/chart-default.yaml"  # the chart's default-plugins.yaml
POOL = {
    "apiVersion": "inference.networking.k8s.io/v1",
    "kind": "InferencePool",
    "metadata": {"name": "vllm-llama3-8b-instruct", "namespace": "default", "resourceVersion": "1"},
    "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}]},
}
POD = {
    "metadata": {"name": "vllm-0", "namespace": "default", "labels": {"app": "vllm"}, "resourceVersion": "2"},
    "status": {"podIP": "127.0.0.90", "conditions": [{"type": "Ready", "status": "True"}]},
}


def parsed(*argv: str):
    return build_parser().parse_args(["picker", *argv])


def test_pflag_booleans_values_durations_and_upstream_defaults():
    options = options_from_args(parsed("--pool-name", "p"))
    assert options.secure_serving and options.metrics_endpoint_auth  # upstream defaults: both on
    assert (options.grpc_port, options.health_port, options.metrics_port) == (9002, 9003, 9090)
    assert options.refresh_metrics_interval == 0.05
    for off in ("--secure-serving=false", "--secure-serving=False", "--secure-serving=0", "--secure-serving=f"):
        assert not options_from_args(parsed("--pool-name", "p", off)).secure_serving
    assert options_from_args(parsed("--pool-name", "p", "--secure-serving")).secure_serving
    assert not options_from_args(parsed("--pool-name=p", "--metrics-endpoint-auth=false")).metrics_endpoint_auth
    options = options_from_args(parsed("--pool-name=p", "--grpc-port=9100", "--refresh-metrics-interval=1m30s"))
    assert options.grpc_port == 9100 and options.refresh_metrics_interval == 90
    with pytest.raises(SystemExit):
        parsed("--pool-name", "p", "--tracing=maybe")


def test_pool_namespace_defaults_to_the_namespace_environment_variable(monkeypatch):
    monkeypatch.setenv("NAMESPACE", "team")
    assert options_from_args(parsed("--pool-name", "p")).pools == ["team/p"]
    assert options_from_args(parsed("--pool-name", "p", "--pool-namespace", "other")).pools == ["other/p"]
    monkeypatch.delenv("NAMESPACE")
    assert options_from_args(parsed("--pool-name", "p")).pools == ["default/p"]


def test_config_text_instead_of_a_file_and_refused_modes():
    text = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
    assert options_from_args(parsed("--pool-name", "p", "--config-text", text)).config_text == text
    with pytest.raises(ValueError, match="--config-file or --config-text"):
        options_from_args(parsed("--pool-name", "p", "--config-text", text, "--config-file", "x.yaml"))
    with pytest.raises(ValueError, match="--endpoint-selector"):
        options_from_args(parsed("--endpoint-selector", "app=vllm", "--endpoint-target-ports", "8000"))


def test_verbosity_and_zap_flags_set_the_log_level_and_format():
    assert log_settings(parsed("--pool-name", "p")) == ("info", True)
    assert log_settings(parsed("--pool-name", "p", "-v", "4")) == ("debug", True)
    assert log_settings(parsed("--pool-name", "p", "--v=5", "--zap-encoder", "console")) == ("debug", False)
    assert log_settings(parsed("--pool-name", "p", "--zap-log-level", "error", "-v", "5")) == ("error", True)
    assert log_settings(parsed("--pool-name", "p", "--zap-log-level=4")) == ("debug", True)
    assert log_settings(parsed("--pool-name", "p", "-v", "5", "--log-level", "warning")) == ("warning", True)
    with pytest.raises(ValueError, match="--zap-log-level"):
        log_settings(parsed("--pool-name", "p", "--zap-log-level", "loud"))


def test_flags_not_acted_on_are_reported_when_they_ask_for_something():
    report = unused_flag_report(parsed("--pool-name", "p"))
    assert set(report) == {"--enable-pprof", "--tracing"}  # upstream turns these on by default
    report = unused_flag_report(
        parsed("--pool-name", "p", "--tracing=false", "--enable-pprof=false", "--ha-enable-leader-election")
    )
    assert set(report) == {"--ha-enable-leader-election"}
    report = unused_flag_report(parsed("--pool-name", "p", "--tracing=false", "--kv-cache-usage-percentage-metric=x"))
    assert set(report) == {"--enable-pprof", "--kv-cache-usage-percentage-metric"}
    argv = []
    for unused in UNUSED_FLAGS:
        argv += [f"{unused.flag}=true"] if unused.is_bool else [unused.flag, "1"]
    assert set(unused_flag_report(parsed("--pool-name", "p", *argv))) == {u.flag for u in UNUSED_FLAGS}


async def health(target: str, service: str, credentials=None) -> int:
    channel = (
        grpc.aio.secure_channel(target, credentials, options=(("grpc.ssl_target_name_override", "localhost"),))
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return reply.status


async def test_the_upstream_chart_argument_list_starts_poolgate_picker(tmp_path):
    host = "127.0.1.70"
    grpc_port, metrics_port = free_port(host), free_port(host)
    async with FakeApiServer() as api:
        api.add("/apis/inference.networking.k8s.io/v1/namespaces/default/inferencepools", POOL)
        api.add("/api/v1/namespaces/default/pods", POD)
        env = {**os.environ, "KUBECONFIG": api.kubeconfig(tmp_path / "kubeconfig"), "NAMESPACE": "default"}
        chart_args = [
            "--pool-name",
            "vllm-llama3-8b-instruct",
            "--pool-namespace",
            "default",
            "--pool-group",
            "inference.networking.k8s.io",
            "--zap-encoder",
            "json",
            "--config-file",
            str(CHART_CONFIG),  # unchanged
            "--tracing=false",
            "--metrics-endpoint-auth=false",
            "--grpc-health-port",
            "9003",
            "-v",
            "1",
        ]
        local = ["--grpc-host", host, "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)]
        with Processes(tmp_path / "logs") as processes:
            picker = processes.start("picker", [*POOLGATE, "picker", *chart_args, *local], env=env)
            await asyncio.to_thread(wait_for_port, host, 9003, 30.0, picker)
            for _ in range(100):  # readiness once the pool and its pods are listed
                if await health(f"{host}:9003", "readiness") == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.1)
            assert await health(f"{host}:9003", "readiness") == health_pb2.HealthCheckResponse.SERVING
            # ext_proc speaks TLS by default (a self-signed certificate), as upstream
            with pytest.raises(grpc.aio.AioRpcError):
                await health(f"{host}:{grpc_port}", "liveness")
            tls = grpc.ssl_channel_credentials()
            with pytest.raises(grpc.aio.AioRpcError, match=r"(?i)certificate|handshake|ssl"):
                await health(f"{host}:{grpc_port}", "liveness", tls)  # self-signed: a verifying client refuses
            # it serves: a client trusting the certificate it presents (as Envoy does with verification off) gets a
            # pick, with no pool named in the call (the picker serves one pool, as upstream)
            pem = await asyncio.to_thread(ssl.get_server_certificate, (host, grpc_port))
            trusted = grpc.ssl_channel_credentials(root_certificates=pem.encode())
            options = (("grpc.ssl_target_name_override", "localhost"),)
            async with grpc.aio.secure_channel(f"{host}:{grpc_port}", trusted, options=options) as channel:
                stream = ExtProcStream(channel)
                body = b'{"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": "Say hello"}'
                await stream.send(request_headers(), request_body(body))
                reply, echoed = await stream.read(2, timeout=10)
                mutation = reply.request_headers.response.header_mutation
                assert header_values(mutation)["x-gateway-destination-endpoint"] == "127.0.0.90:8000"
                assert echoed.request_body.response.body_mutation.streamed_response.body == body
            metrics_url = f"http://{host}:{metrics_port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics_url, timeout=5).read().decode())
            assert 'llm_d_epp_ready_endpoints{name="vllm-llama3-8b-instruct"} 1.0' in text  # no token needed
            (line,) = [line for line in picker.output().splitlines() if "not acted on" in line]
            assert set(orjson.loads(line)["flags"]) == {"--enable-pprof"}  # --tracing=false was given


async def test_metrics_need_a_token_the_api_server_accepts_and_allows_on_kubernetes():
    async with FakeApiServer() as api:
        api.add("/apis/inference.networking.k8s.io/v1/namespaces/default/inferencepools", POOL)
        api.add("/api/v1/namespaces/default/pods", POD)
        api.users = {"prometheus-token": "system:serviceaccount:monitoring:prometheus", "other-token": "bob"}
        api.metrics_readers = {"system:serviceaccount:monitoring:prometheus"}
        from kubernetes.client import ApiClient, Configuration

        client = ApiClient(Configuration(host=f"http://127.0.0.1:{api.port}"))
        options = PickerOptions(
            host="127.0.0.1",
            grpc_port=0,
            health_port=0,
            metrics_port=0,
            pools=["default/vllm-llama3-8b-instruct"],
            secure_serving=False,
            kube_client=client,
        )
        picker = Picker(options)
        await picker.start()
        try:
            url = f"http://127.0.0.1:{picker.ports()['metrics']}/metrics"

            def status(token: str | None) -> int:
                request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
                try:
                    return urllib.request.urlopen(request, timeout=5).status
                except urllib.error.HTTPError as error:
                    return error.code

            assert await asyncio.to_thread(status, None) == 401
            assert await asyncio.to_thread(status, "forged") == 401
            assert await asyncio.to_thread(status, "other-token") == 403
            assert await asyncio.to_thread(status, "prometheus-token") == 200
            asked = len(api.reviews)
            assert await asyncio.to_thread(status, "prometheus-token") == 200
            assert len(api.reviews) == asked  # cached
        finally:
            await picker.stop()
            client.close()


async def test_metrics_are_open_in_standalone_mode(tmp_path):
    objects = tmp_path / "objects.yaml"
    objects.write_text(yaml.safe_dump(POOL))
    picker = Picker(
        PickerOptions(host="127.0.0.1", grpc_port=0, health_port=0, metrics_port=0, objects_file=str(objects))
    )
    await picker.start()
    try:
        url = f"http://127.0.0.1:{picker.ports()['metrics']}/metrics"
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).status) == 200
    finally:
        await picker.stop()
