"""What the gateway does when a picker is gone (FailOpen / FailClose), and pools that speak HTTP/2 cleartext."""

from __future__ import annotations

import time

import pytest

from poolgate.api.builders import (
    chat,
    gateway,
    gateway_class,
    listener,
    pod,
    pool,
    route,
    service,
)
from poolgate.envoy import envoy_binary
from poolgate.load import faults
from poolgate.translate.output import write_yaml
from poolgate.up.processes import POOLGATE, free_port, wait_for_port, wait_until
from tests.support.processes import Processes

pytestmark = pytest.mark.xdist_group("e2e-failure")


def test_fail_open_keeps_answering_and_fail_close_refuses_fast_while_the_picker_is_down(start_stack, http):
    stack = start_stack(*faults.picker_fault_objects())  # /open/...: FailOpen pool, /v1/...: FailClose
    url = stack.url()
    assert http.post(f"{url}/open/chat/completions", json=chat()).status_code == 200
    assert http.post(f"{url}/v1/chat/completions", json=chat()).status_code == 200
    stack.child("picker/default/epp-open").kill()
    stack.child("picker/default/epp-closed").kill()
    open_endpoints = set(stack.endpoints("open"))
    for _ in range(10):
        response = http.post(f"{url}/open/chat/completions", json=chat())
        assert response.status_code == 200, response.text  # Envoy's own balancing takes over
        assert response.headers["x-poolgate-served-by"] in open_endpoints
    for _ in range(5):
        started = time.monotonic()
        response = http.post(f"{url}/v1/chat/completions", json=chat())
        assert 500 <= response.status_code < 600
        assert time.monotonic() - started < 1.0
    # the pickers come back (as a kubelet would restart them) and picking resumes without touching Envoy
    assert sorted(stack.stack.supervisor.restart_exited()) == ["picker/default/epp-closed", "picker/default/epp-open"]
    for name in ("picker/default/epp-closed", "picker/default/epp-open"):
        stack.stack.supervisor.wait_ready(name)
    wait_until(
        lambda: http.post(f"{url}/v1/chat/completions", json=chat()).status_code == 200,
        timeout=10,
        message="FailClose pool answering again",
    )
    response = http.post(f"{url}/open/chat/completions", json=chat())
    assert response.headers.get("x-conformance-test-selected-endpoint") in open_endpoints


def h2c_sidecar(path, listen: tuple[str, int], upstream: tuple[str, int], admin: tuple[str, int]) -> None:
    """An Envoy that accepts HTTP/2 cleartext (prior knowledge) only and forwards HTTP/1.1 to a simulated server:
    the pod of an h2c pool."""
    address = lambda host, port: {"socket_address": {"address": host, "port_value": port}}  # noqa: E731
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "sidecar",
        "codec_type": "HTTP2",
        "route_config": {
            "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "sim"}}]}
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    write_yaml(
        path,
        {
            "admin": {"address": address(*admin)},
            "static_resources": {
                "listeners": [
                    {
                        "name": "h2c",
                        "address": address(*listen),
                        "filter_chains": [
                            {
                                "filters": [
                                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                                ]
                            }
                        ],
                    }
                ],
                "clusters": [
                    {
                        "name": "sim",
                        "type": "STATIC",
                        "load_assignment": {
                            "cluster_name": "sim",
                            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(*upstream)}}]}],
                        },
                    }
                ],
            },
        },
    )


def test_an_h2c_pool_is_spoken_to_in_http2(start_stack, http, tmp_path):
    ip = "127.0.7.10"
    sim_port, admin_port = free_port(ip), free_port(ip)
    with Processes(tmp_path / "pod") as procs:
        sim = procs.start("sim", [*POOLGATE, "sim", "--no-latency", "--listen", f"{ip}:{sim_port}"])
        h2c_sidecar(tmp_path / "sidecar.yaml", (ip, 8000), (ip, sim_port), (ip, admin_port))
        sidecar = procs.start(
            "sidecar",
            [envoy_binary(), "-c", str(tmp_path / "sidecar.yaml"), "--disable-hot-restart", "--log-level", "warn"],
        )
        wait_for_port(ip, sim_port, process=sim)
        wait_for_port(ip, 8000, process=sidecar)
        stack = start_stack(
            gateway_class(), gateway(listeners=listener()), route(), pool(h2c=True), service(), pod("h2c-0", ip)
        )  # a real server: the pod's address is given
        for _ in range(3):
            response = http.post(f"{stack.url()}/v1/chat/completions", json=chat())
            assert response.status_code == 200, response.text
            assert response.headers["x-poolgate-served-by"] == f"{ip}:{sim_port}"
        stats = http.get(f"http://{ip}:{admin_port}/stats?filter=downstream_rq_http2_total").text
        assert int(stats.split(":")[-1]) >= 3, stats
