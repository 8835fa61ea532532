"""A real vLLM server killed in the middle of a stream and started again: its stream breaks, every other request
goes to the survivor while it is down and while it starts (30-70 s, until /health answers), then it serves again."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from e2e.vllm.gateway import STEER_HEADER, vllm_gateway
from e2e.vllm.servers import MODEL
from poolgate.up import vllm
from poolgate.up.processes import http_ok

pytestmark = [pytest.mark.xdist_group("vllm"), pytest.mark.timeout(900)]  # vLLM starts in 30 s to minutes


def served(server) -> float:
    return server.metric("vllm:request_success_total")


def ask(client: openai.OpenAI) -> None:
    """One short request through the gateway, with a prompt no server has cached (no prefix affinity)."""
    prompt = f"{uuid.uuid4().hex} ka lo mi ne"
    answer = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, extra_body={"ignore_eos": True})
    assert answer.usage.completion_tokens == 2


def test_a_killed_server_is_excluded_until_healthy_then_used_again(vllm_pair, tmp_path):
    survivor, victim = vllm_pair
    with vllm_gateway(tmp_path, vllm_pair) as (_stack, client):
        stream = client.completions.create(
            model=MODEL,
            prompt="ka lo mi",
            max_tokens=2000,
            stream=True,
            extra_body={"ignore_eos": True},
            extra_headers={STEER_HEADER: victim.address},
        )
        received, finished = 0, False
        with pytest.raises((openai.APIError, openai.APIConnectionError)):
            for chunk in stream:
                received += 1
                finished = finished or chunk.choices[0].finish_reason is not None
                if received == 5:
                    victim.kill()
        assert received >= 5 and not finished

        before = served(survivor)
        for _ in range(5):
            ask(client)
        assert served(survivor) - before == 5  # the dead server got none

        victim.start()
        during, deadline = 0, time.monotonic() + vllm.READY_TIMEOUT
        while not http_ok(f"{victim.url}{vllm.HEALTH_PATH}"):
            assert victim.process.running and time.monotonic() < deadline, f"restart failed, see {victim.log_path}"
            ask(client)  # every request succeeds while the victim starts: it is not picked before /health
            during += 1
            time.sleep(0.5)
        victim.wait_ready()
        assert during > 0

        deadline = time.monotonic() + 120
        while served(victim) == 0:  # bursts of 4 at once: the queue-aware picker spreads them
            assert time.monotonic() < deadline, "the restarted server got no request in 120 s"
            with ThreadPoolExecutor(4) as pool:
                for answer in [pool.submit(ask, client) for _ in range(4)]:
                    answer.result()  # re-raises a failed request
    print(f"restart: {victim.start_seconds[-1]:.1f} s to healthy, {during} requests served meanwhile")
