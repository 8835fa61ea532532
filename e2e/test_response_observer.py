"""Under `poolgate up`, a picker that does not edit responses picks on one ext_proc call and follows each response on
a second, observe-only call. Through the real Envoy, the picker still sees every response (its TTFT, its usage, its
end) and releases every booking, a client that leaves mid-stream included."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolgate.api.builders import chat, pool_ref, sim_deployment
from poolgate.load import faults
from poolgate.up.stack import PICKER_METRICS_PORT

pytestmark = pytest.mark.xdist_group("response-observer")

SLOW_SIM = ("--decode-ms", "20", "--prefill-overhead-ms", "2", "--prefill-ms-per-token", "0")


def picker_samples(running) -> dict[str, float]:
    """The picker's metric samples summed over labels, by sample name."""
    host = faults.picker_address(running.stack, "epp")
    text = httpx.get(f"http://{host}:{PICKER_METRICS_PORT}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def test_the_observer_call_accounts_for_every_response_and_releases_every_booking(start_stack):
    running = start_stack(
        *faults.gateway_objects([{"backendRefs": [pool_ref("pool")]}]),
        *faults.pool_objects(),
        sim_deployment("pool", 2, args=SLOW_SIM),
        picker_args=(),
    )
    config = running.stack.status.translation.bootstrap()  # what Envoy runs: the observer is on
    listener = config["static_resources"]["listeners"][0]
    filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    assert "poolgate.response_observer" in [f["name"] for f in filters]
    url = f"{running.url()}/v1/chat/completions"
    with httpx.Client(timeout=30) as client:
        for i in range(6):
            answer = client.post(url, json=chat(content=f"plain {i}"))
            assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4
            streamed = client.post(url, json=chat(content=f"streamed {i}", stream=True))
            assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
        with client.stream("POST", url, json=chat(content="left early", max_tokens=200, stream=True)) as leaving:
            next(leaving.iter_bytes())  # the first token arrived; the client goes away
    deadline = time.monotonic() + 10
    while True:
        samples = picker_samples(running)
        if samples.get("llm_d_epp_request_running", 1) == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert samples["llm_d_epp_request_running"] == 0  # every booking released, the early leaver's included
    assert samples["llm_d_epp_request_ttft_seconds_count"] >= 12  # first tokens seen on the observer call
    assert samples["llm_d_epp_request_duration_seconds_count"] >= 12  # and the responses' ends
    assert samples["llm_d_epp_request_output_tokens_sum"] >= 12 * 4  # usage read from the responses' tails
