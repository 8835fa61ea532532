"""poolgate's gateway (real Envoy and picker, `tests.support.stacks`) in front of the suite's real vLLM pair."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from e2e.vllm.servers import MODEL, PORT, VllmServer
from poolgate.api import contract
from poolgate.api.builders import gateway, gateway_class, listener, pod, pool, pool_ref, route, service
from poolgate.api.contract import STEERING_HEADER
from poolgate.up.processes import wait_until
from poolgate.up.stack import PICKER_METRICS_PORT
from tests.support.stacks import RunningStack, running_stack

STEER_HEADER = STEERING_HEADER
ROUND_ROBIN_CONFIG = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: round-robin-picker
schedulingProfiles:
- name: round-robin
  plugins:
  - pluginRef: round-robin-picker
"""
PROFILES = ("poolgate-default", "round-robin", "llmd-default")


def gateway_objects(servers: list[VllmServer], profile: str = "poolgate-default") -> list[dict]:
    """A Gateway routing everything to one InferencePool whose pods are the real vLLM servers."""
    inference_pool = pool(MODEL, app=MODEL, ports=(PORT,))
    if profile != "round-robin":
        inference_pool["metadata"]["annotations"] = {contract.PROFILE_ANNOTATION: profile}
    return [
        gateway_class(),
        gateway(listeners=listener()),
        route(rules=[{"backendRefs": [pool_ref(MODEL)]}]),
        inference_pool,
        service(),
        *(pod(server.name, server.host, app=MODEL) for server in servers),
    ]


@contextlib.contextmanager
def vllm_gateway(
    directory: Path, servers: list[VllmServer], profile: str = "poolgate-default"
) -> Iterator[tuple[RunningStack, openai.OpenAI]]:
    """The gateway in front of `servers` with one of PROFILES, and an OpenAI client pointed at it."""
    picker_args: tuple[str, ...] = ("--enable-conformance-steering", "--refresh-metrics-interval", "100ms")
    if profile == "round-robin":
        config = directory / "round-robin.yaml"
        directory.mkdir(parents=True, exist_ok=True)
        config.write_text(ROUND_ROBIN_CONFIG)
        picker_args += ("--config-file", str(config), "--profile", "round-robin")
    with running_stack(directory, *gateway_objects(servers, profile), picker_args=picker_args) as stack:
        wait_until(lambda: scraped_everything(stack), timeout=30, interval=0.1, message="the picker scraping every pod")
        client = openai.OpenAI(base_url=f"{stack.url()}/v1", api_key="unused", max_retries=0, timeout=120)
        yield stack, client


def scraped_everything(stack: RunningStack) -> bool:
    """Whether the picker has read every endpoint's metrics at least once (its own metrics say so)."""
    picker = stack.stack.status.plan.pickers[0].address.host
    try:
        text = httpx.get(f"http://{picker}:{PICKER_METRICS_PORT}/metrics", timeout=5).text
    except httpx.TransportError:  # the picker binds its metrics port last, after its gRPC port is ready
        return False
    ages = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "poolgate_pool_endpoint_metrics_age_seconds"
    ]
    return bool(ages) and all(math.isfinite(age) for age in ages)
