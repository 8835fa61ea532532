"""Prefill/decode disaggregation through Envoy with the upstream picker config `pd-epp-config.yaml` (llm-d router
v0.10): the picker sends the request to a decode pod and names a prefill pod in `x-prefiller-host-port`; the decode
pod (a simulator playing the upstream routing sidecar) has the prefill pod prefill the prompt first, then decodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.api.contract import PREFILLED_BY_HEADER, PREFILLER_HOST_PORT_HEADER, SERVED_BY_HEADER
from tests.support.upstream import UPSTREAM_CONFIGS

pytestmark = pytest.mark.xdist_group("e2e-disaggregation")

PD_CONFIG = UPSTREAM_CONFIGS / "llm-d-router-v0.10" / "pd-epp-config.yaml"
LONG_PROMPT = "Summarise the history of the printing press in Europe. " * 20  # ~1,100 bytes: > 16 tokens


def role_deployment(role: str) -> dict:
    """One simulated pod of pool `pool` labelled `llm-d.ai/role: <role>`."""
    deployment = sim_deployment("pool", replicas=1, name=role)
    deployment["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] = role
    return deployment


def test_a_request_is_prefilled_on_the_prefill_pod_and_decoded_on_the_decode_pod(start_stack, http, tmp_path: Path):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(),
        pool(),
        service(),
        role_deployment("prefill"),
        role_deployment("decode"),
        picker_args=("--config-file", str(PD_CONFIG), "--profile", "decode"),  # poolgate up passes --profile too
    )
    prefill_pod, decode_pod = _address_of(stack, "prefill"), _address_of(stack, "decode")
    body = chat(content=LONG_PROMPT)
    first = http.post(
        f"{stack.url()}/v1/chat/completions", json=body, headers={PREFILLER_HOST_PORT_HEADER: "192.0.2.1:80"}
    )
    assert first.status_code == 200, first.text
    assert first.headers[SERVED_BY_HEADER] == decode_pod  # the decode filter keeps the prefill pod out
    # the picker named the prefill pod (a client-sent header is removed by Envoy before the picker runs)
    assert first.headers[PREFILLED_BY_HEADER] == prefill_pod
    # the decode pod computed only the last prompt token: the rest came from the prefill pod
    assert first.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == first.json()["usage"]["prompt_tokens"] - 1
    # the same prompt again: the picker credits the decode pod with its blocks, so fewer than `nonCachedTokens` (16)
    # are uncached there and the decode pod serves it alone
    again = http.post(f"{stack.url()}/v1/chat/completions", json=body)
    assert again.status_code == 200, again.text
    assert again.headers[SERVED_BY_HEADER] == decode_pod
    assert PREFILLED_BY_HEADER not in again.headers
    # a short prompt (under 16 estimated tokens) is never disaggregated
    short = http.post(f"{stack.url()}/v1/chat/completions", json=chat(content="hi"))
    assert short.status_code == 200 and PREFILLED_BY_HEADER not in short.headers


def _address_of(stack, role: str) -> str:
    """`ip:port` of the one pod of the Deployment named `role`."""
    graph = stack.stack.status.translation.graph
    target = graph.pools[("default", "pool")]
    for pod, port in target.endpoints:
        if pod.metadata.labels.get("llm-d.ai/role") == role:
            return f"{pod.status.pod_ip}:{port}"
    raise AssertionError(f"no {role} pod in the pool")
