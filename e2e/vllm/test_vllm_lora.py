"""LoRA affinity on real vLLM: an adapter loaded at start on one server, another loaded at run time on the other
(/v1/load_lora_adapter); while both servers are busy with their adapter's streams, every request for an adapter
through the gateway goes to the server that has it (the other would answer 404), as the picker's served-endpoint
header (conformance steering on) and the answer both show. The picker knows where each adapter is from the servers'
`/v1/models` lists (its served-model filter) and from `vllm:lora_requests_info` (affinity scoring)."""

from __future__ import annotations

import threading

import httpx
import pytest

from e2e.vllm.gateway import vllm_gateway
from e2e.vllm.servers import ADAPTER, TINY_MODEL_DIR
from poolgate.api.contract import CONFORMANCE_SERVED_HEADER
from poolgate.up.processes import wait_until

pytestmark = [pytest.mark.xdist_group("vllm"), pytest.mark.timeout(900)]  # vLLM starts in 30 s to minutes
RUNTIME_ADAPTER = "tiny-lora-runtime"


def models(server) -> set[str]:
    return {entry["id"] for entry in httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]}


def running_adapters(server) -> str:
    """`running_lora_adapters` of the newest `vllm:lora_requests_info` series ("" when none)."""
    series = server.samples().get("vllm:lora_requests_info", [])
    return max(series, key=lambda s: s.value).labels["running_lora_adapters"] if series else ""


@pytest.fixture
def runtime_adapter(vllm_pair):
    """RUNTIME_ADAPTER loaded at run time on the second server (and unloaded after the test)."""
    second = vllm_pair[1]
    body = {"lora_name": RUNTIME_ADAPTER, "lora_path": str(TINY_MODEL_DIR / "lora")}
    response = httpx.post(f"{second.url}/v1/load_lora_adapter", json=body, timeout=60)
    assert response.status_code == 200, response.text
    yield
    httpx.post(f"{second.url}/v1/unload_lora_adapter", json={"lora_name": RUNTIME_ADAPTER}, timeout=60)


def test_requests_for_an_adapter_go_to_the_server_that_has_it(vllm_pair, runtime_adapter, tmp_path):
    first, second = vllm_pair
    assert ADAPTER in models(first) and RUNTIME_ADAPTER not in models(first)
    assert RUNTIME_ADAPTER in models(second) and ADAPTER not in models(second)

    stop = threading.Event()

    def keep_running(server, adapter: str, started: threading.Event) -> None:
        body = {"model": adapter, "prompt": "ka lo", "max_tokens": 1500, "ignore_eos": True, "stream": True}
        while not stop.is_set():  # a fast machine finishes 1,500 tokens in seconds: start another
            with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=300) as response:
                assert response.status_code == 200, response.read()
                for _ in response.iter_lines():
                    started.set()
                    if stop.is_set():
                        return

    # two streams per adapter, the second started once the first generates: while one restarts the other runs, so
    # vLLM never stops listing the adapter as running
    background = []
    served: dict[str, list[str]] = {ADAPTER: [], RUNTIME_ADAPTER: []}
    try:
        for server, adapter in ((first, ADAPTER), (second, RUNTIME_ADAPTER)):
            for _ in range(2):
                started = threading.Event()
                thread = threading.Thread(target=keep_running, args=(server, adapter, started), daemon=True)
                thread.start()
                background.append(thread)
                assert started.wait(120), f"no stream for {adapter} on {server.name} started"
        wait_until(
            lambda: running_adapters(first) == ADAPTER and running_adapters(second) == RUNTIME_ADAPTER,
            timeout=60,
            interval=0.2,
            message="each adapter running on its server",
        )
        with vllm_gateway(tmp_path, vllm_pair) as (_stack, client):
            for _ in range(4):
                for adapter in (ADAPTER, RUNTIME_ADAPTER):
                    raw = client.completions.with_raw_response.create(
                        model=adapter, prompt="mi ne ru", max_tokens=2, extra_body={"ignore_eos": True}
                    )
                    answer = raw.parse()
                    assert answer.model == adapter and answer.usage.completion_tokens == 2
                    served[adapter].append(raw.headers[CONFORMANCE_SERVED_HEADER])
    finally:
        stop.set()
        for thread in background:
            thread.join(60)
    assert served == {ADAPTER: [first.address] * 4, RUNTIME_ADAPTER: [second.address] * 4}
