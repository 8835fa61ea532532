"""A real `poolgate picker` started with an upstream chart's rendered EndpointPickerConfig serves requests through
Envoy (the drop-in case: keep your config file, swap the image), and forwards a request no parser claims to the
least-loaded pod instead of refusing it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolgate.api.builders import MODEL, chat, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.api.contract import PICKED_ECHO_HEADER, SERVED_BY_HEADER
from tests.support.upstream import UPSTREAM_CONFIGS

pytestmark = pytest.mark.xdist_group("e2e-upstream-configs")


def two_pod_stack(start_stack, picker_args: tuple[str, ...], **deployment_options):
    """A Gateway routing to one pool of two simulated pods (`sim_deployment` options), its picker started with
    `picker_args`."""
    return start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(),
        service(),
        sim_deployment("pool", replicas=2, **deployment_options),
        picker_args=picker_args,
    )


@pytest.mark.parametrize("config", ["llm-d-router-v0.10/chart-default.yaml", "gie-v1.5.0/chart-default.yaml"])
def test_the_upstream_chart_default_config_serves_through_envoy(start_stack, http, config):
    stack = two_pod_stack(start_stack, ("--config-file", str(UPSTREAM_CONFIGS / config), "--profile", "default"))
    members = set(stack.endpoints("pool"))
    body = chat(content="Explain the printing press. " * 40)
    served = []
    for _ in range(4):
        response = http.post(f"{stack.url()}/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        served.append(response.headers[SERVED_BY_HEADER])
    assert set(served) <= members
    # prefix affinity (weight 3 of 7) keeps a repeated prompt on the endpoint that served it first
    assert len(set(served[1:])) == 1


def waiting_requests(endpoint: str) -> float:
    """A pod's own `vllm:num_requests_waiting`."""
    text = httpx.get(f"http://{endpoint}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "vllm:num_requests_waiting":
            return sum(sample.value for sample in family.samples)
    raise AssertionError(f"{endpoint} reports no vllm:num_requests_waiting")


def keep_busy(endpoint: str, requests: int) -> None:
    """Send `requests` long completions straight to one pod (not through the gateway), in the background."""

    def send() -> None:
        body = {"model": MODEL, "prompt": "busy", "max_tokens": 400}
        try:
            httpx.post(f"http://{endpoint}/v1/completions", json=body, timeout=60)
        except httpx.HTTPError:
            pass  # the stack stops under it at the end of the test

    for _ in range(requests):
        threading.Thread(target=send, daemon=True).start()


@pytest.mark.parametrize(
    "picker_args",
    [("--config-file", str(UPSTREAM_CONFIGS / "llm-d-router-v0.10/chart-default.yaml"), "--profile", "default"), ()],
    ids=["upstream-chart-config", "poolgate-default"],
)
def test_a_request_no_parser_claims_is_passed_through_to_the_least_loaded_pod(start_stack, http, picker_args):
    stack = two_pod_stack(start_stack, picker_args, args=("--max-num-seqs", "1", "--decode-ms", "40"))
    busy, idle = stack.endpoints("pool")
    keep_busy(busy, 3)  # one runs, two wait: ~16 s each at 40 ms per token
    deadline = time.monotonic() + 30
    while waiting_requests(busy) < 2:
        assert time.monotonic() < deadline, "the busy pod never queued"
        time.sleep(0.05)
    time.sleep(0.5)  # the picker scrapes every 50 ms
    tokenize = f"{stack.url()}/tokenize"  # vLLM's, not an OpenAI path: no parser of either config claims it
    for _ in range(3):
        response = http.post(tokenize, json={"model": MODEL, "prompt": "Explain the printing press."})
        assert response.status_code == 200, response.text
        assert response.json()["count"] > 0
        assert (response.headers[SERVED_BY_HEADER], response.headers[PICKED_ECHO_HEADER]) == (idle, idle)
        # not JSON at all: the gateway forwards it, and the pod (not the picker) answers it
        garbage = http.post(
            tokenize, content=b"\x00\x01 not json", headers={"content-type": "application/octet-stream"}
        )
        assert garbage.headers[SERVED_BY_HEADER] == idle, garbage.text
    assert waiting_requests(busy) >= 1  # the load held while the requests were routed
