"""The assembled picker in-process: objects file -> pools -> gRPC, health services, Prometheus endpoint, TLS."""

import asyncio
import os

import aiohttp
import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from picker.discovery.view import PickerView
from picker.server.app import Picker, PickerOptions
from picker.server.service import self_signed_key_pair
from poolgate.api.builders import pod, pool
from simulator.config import ServerConfig
from simulator.server import SimulatedServers
from tests.support.extproc import ExtProcStream, header_values, request_body, request_headers
from tests.support.picker import PickerHarness, pool_view


async def health_status(target: str, service: str, credentials=None) -> int | str:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.aio.AioRpcError as error:
            return error.code().name
        return reply.status


async def test_objects_file_picker_serves_reloads_reports_health_and_metrics(tmp_path):
    async with SimulatedServers(["127.0.0.40:0"], ServerConfig().without_latency()) as first:
        port = first[0].port
        async with SimulatedServers([f"127.0.0.41:{port}"], ServerConfig().without_latency()):
            path = tmp_path / "objects.yaml"
            path.write_text(yaml.safe_dump_all([pool(ports=(port,), picker=None), pod("p0", "127.0.0.40")]))
            picker = Picker(
                PickerOptions(
                    host="127.0.0.1",
                    grpc_port=0,
                    health_port=0,
                    metrics_port=0,
                    objects_file=str(path),
                    profile="llmd-default",
                    fallbacks=2,  # every endpoint in the destination list
                    secure_serving=False,
                )
            )
            await picker.start()
            try:
                ports = picker.ports()
                target = f"127.0.0.1:{ports['grpc']}"
                for service in ("liveness", "readiness", "", "envoy.service.ext_proc.v3.ExternalProcessor"):
                    assert (
                        await health_status(f"127.0.0.1:{ports['health']}", service)
                        == health_pb2.HealthCheckResponse.SERVING
                    )
                assert await health_status(target, "readiness") == health_pb2.HealthCheckResponse.SERVING
                assert await health_status(target, "no-such-service") == "NOT_FOUND"

                async def destinations() -> str:
                    async with grpc.aio.insecure_channel(target) as channel:
                        stream = ExtProcStream(channel, "default/pool")
                        await stream.send(request_headers(), request_body(b'{"model": "m", "prompt": "hi"}'))
                        reply = (await stream.read(2))[0]
                        return header_values(reply.request_headers.response.header_mutation)[
                            "x-gateway-destination-endpoint"
                        ]

                assert await destinations() == f"127.0.0.40:{port}"
                temporary = tmp_path / ".objects.new"
                temporary.write_text(path.read_text() + "---\n" + yaml.safe_dump(pod("p1", "127.0.0.41")))
                os.replace(temporary, path)
                for _ in range(250):
                    if len(picker.pools.pools["default/pool"].state) == 2:
                        break
                    await asyncio.sleep(0.02)
                assert sorted((await destinations()).split(",")) == [f"127.0.0.40:{port}", f"127.0.0.41:{port}"]

                await asyncio.sleep(0.2)  # a few scrapes
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{ports['metrics']}/metrics") as response:
                        text = await response.text()
                for family in (
                    "inference_objective_request_total",
                    "inference_objective_request_sizes_bucket",
                    "inference_extension_scheduler_e2e_duration_seconds_bucket",
                    "inference_extension_scheduler_attempts_total",
                    'inference_pool_ready_pods{name="pool"} 2.0',
                    'inference_pool_average_kv_cache_utilization{name="pool"}',
                    'inference_pool_average_queue_size{name="pool"}',
                    "inference_extension_info",
                    "process_cpu_seconds_total",
                ):
                    assert family in text, family
                assert (
                    'inference_objective_request_total{model_name="m",priority="0",target_model_name="m"} 2.0' in text
                )
            finally:
                await picker.stop()


async def test_readiness_waits_for_discovery():
    async with PickerHarness(PickerView(), ready=False) as picker:
        target = f"127.0.0.1:{picker.server.health_port}"
        assert await health_status(target, "liveness") == health_pb2.HealthCheckResponse.SERVING
        for service in ("readiness", "", "envoy.service.ext_proc.v3.ExternalProcessor"):
            assert await health_status(target, service) == health_pb2.HealthCheckResponse.NOT_SERVING
        await picker.server.set_ready(True)
        assert await health_status(target, "readiness") == health_pb2.HealthCheckResponse.SERVING


async def test_secure_serving_with_a_self_signed_certificate():
    key_pair = self_signed_key_pair(["127.0.0.1"])
    view = PickerView({"default/pool": pool_view("default/pool", ["127.0.0.42:8000"])})
    async with PickerHarness(view, tls=key_pair) as picker:
        stream = picker.stream("default/pool")
        await stream.send(request_headers(), request_body(b'{"model": "m"}'))
        reply = (await stream.read(2))[0]
        assert (
            header_values(reply.request_headers.response.header_mutation)["x-gateway-destination-endpoint"]
            == "127.0.0.42:8000"
        )
        async with grpc.aio.insecure_channel(picker.target) as plain:  # plaintext is refused
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)


def test_cert_path_serving_reads_tls_crt_and_key(tmp_path):
    key, certificate = self_signed_key_pair()
    (tmp_path / "tls.key").write_bytes(key)
    (tmp_path / "tls.crt").write_bytes(certificate)
    picker = Picker(PickerOptions(secure_serving=True, cert_path=str(tmp_path), objects_file="unused"))
    assert picker.server.listen.tls == (key, certificate)
