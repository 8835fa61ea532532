"""A request may stay silent for a long time (a long non-streaming generation, a long wait in a saturated pool's
queue). There is no route timeout unless the HTTPRoute sets one; Envoy's stream idle timeout bounds silence only,
and a streamed answer is never silent. The default is an hour (Envoy's own 5 minutes would cut long generations);
here it is 1 s, so that a 2.4 s silent answer is cut and the same answer streamed is not."""

from __future__ import annotations

import httpx
import pytest

from poolgate.api.builders import chat, pool_ref, sim_deployment
from poolgate.load import faults
from tests.support.stacks import running_stack

pytestmark = pytest.mark.xdist_group("reliability-long-requests")

SILENT_TOKENS = 600  # 600 x 4 ms decode steps: about 2.4 s before the first byte of a non-streaming answer


def test_silence_longer_than_the_stream_idle_timeout_is_cut_and_a_stream_is_not(tmp_path):
    objects = [
        *faults.gateway_objects([{"backendRefs": [pool_ref("pool")]}]),
        *faults.pool_objects(),
        sim_deployment("pool", 1, args=faults.TIMED_SIM),
    ]
    with running_stack(tmp_path, *objects, translate={"stream_idle_timeout_s": 1.0}) as running:
        url = f"{running.url()}/v1/chat/completions"
        quick = httpx.post(url, json=chat(max_tokens=50), timeout=30)
        silent = httpx.post(url, json=chat(max_tokens=SILENT_TOKENS), timeout=30)
        with httpx.stream("POST", url, json=chat(max_tokens=SILENT_TOKENS, stream=True), timeout=30) as streamed:
            chunks = list(streamed.iter_lines())
    assert quick.status_code == 200  # 0.2 s of silence: under the timeout
    assert (silent.status_code, silent.text) == (504, "stream timeout")  # 2.4 s of silence: cut by Envoy
    events = [line for line in chunks if line]
    assert streamed.status_code == 200 and events[-1] == "data: [DONE]"  # the same 2.4 s, streamed: complete
    assert sum(line.startswith("data: {") for line in events) >= SILENT_TOKENS
