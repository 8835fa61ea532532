"""The real Envoy, the real picker processes and simulated pods (the standalone stack), from objects translated by
poolgate's translator.

Two pools behind one Gateway:
- `llama` (FailClose, request bodies full-duplex): two pods; an InferenceModelRewrite maps `alias` to the served model;
- `qwen` (FailOpen, so request bodies BUFFERED): two pods; `q` is rewritten to its model.
One endpoint picker process serves both pools (Envoy names the pool in the gRPC metadata). Rules match the header
`x-pool: llama|qwen` first, then the model name: the model router sets X-Gateway-Model-Name from the body for every
request of the listener.
"""

import asyncio
import json
import time

import aiohttp
import orjson
import pytest

from poolgate.api.builders import gateway, gateway_class, listener, pool, service, sim_deployment
from poolgate.up.processes import wait_until
from tests.support.stacks import running_stack

pytestmark = pytest.mark.xdist_group(name="picker-envoy")  # one stack per module, on one worker

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen3-8B"
PICKER = "picker/default/epp"


def by_header(name: str, value: str, pool_name: str, kind: str = "Exact") -> dict:
    return {
        "matches": [{"headers": [{"type": kind, "name": name, "value": value}]}],
        "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": pool_name}],
    }


def rewrite(name: str, pool_name: str, model: str, target: str, group: str) -> dict:
    return {
        "apiVersion": f"{group}/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "poolRef": {"name": pool_name},
            "rules": [{"matches": [{"model": {"value": model}}], "targets": [{"modelRewrite": target}]}],
        },
    }


def objects() -> list[dict]:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "models", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                by_header("x-pool", "llama", "llama"),
                by_header("x-pool", "qwen", "qwen"),
                by_header(
                    "X-Gateway-Model-Name", r"meta-llama/Llama-3\.1-8B-Instruct|alias", "llama", "RegularExpression"
                ),
                by_header("X-Gateway-Model-Name", QWEN, "qwen"),
            ],
        },
    }
    return [
        gateway_class(),
        gateway(listeners=listener()),
        route,
        service("epp"),
        pool("llama", picker="epp", failure_mode="FailClose"),
        pool("qwen", picker="epp", failure_mode="FailOpen"),
        rewrite("alias", "llama", "alias", LLAMA, "inference.networking.x-k8s.io"),
        rewrite("qwen-alias", "qwen", "q", QWEN, "llm-d.ai"),
        sim_deployment("llama", replicas=2, model=LLAMA),
        sim_deployment("qwen", replicas=2, model=QWEN),
    ]


class Stack:
    """The running stack, and what the tests read from it."""

    def __init__(self, running) -> None:
        self.running = running
        self.url = f"{running.url()}/v1/completions"
        self.llama_pods = {e.split(":")[0] for e in running.endpoints("llama")}
        self.qwen_pods = {e.split(":")[0] for e in running.endpoints("qwen")}

    @property
    def picker(self):
        return self.running.child(PICKER)

    def picker_decisions(self) -> dict[str, str]:
        """request id -> destination, from the picker's one log line per request."""
        out = {}
        for line in self.picker.output().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("msg") == "request" and entry.get("request_id"):
                    out[entry["request_id"]] = entry["destination"]
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    picker_args = ("--enable-conformance-steering", "--profile", "llmd-default", "--log-level", "debug")
    with running_stack(tmp_path_factory.mktemp("envoy"), *objects(), picker_args=picker_args) as running:
        yield Stack(running)


async def completion(
    session, stack, model: str, headers=None, stream=False, routed_by_model=False, **extra
) -> tuple[int, dict, bytes]:
    """POST a completion through Envoy, to the pool of the model (header x-pool) unless `routed_by_model`."""
    body = {"model": model, "prompt": "Tell me about picking endpoints", "max_tokens": 4, "stream": stream}
    body.update(extra)
    sent = {"content-type": "application/json"}
    if not routed_by_model:
        sent["x-pool"] = "qwen" if model == QWEN else "llama"
    sent.update(headers or {})
    async with session.post(stack.url, data=orjson.dumps(body), headers=sent) as response:
        return response.status, dict(response.headers), await response.read()


async def test_requests_land_on_exactly_the_endpoints_the_picker_chose(stack):
    async with aiohttp.ClientSession() as session:
        for target in stack.running.endpoints("llama") * 2:  # steered: the picker's choice is the named endpoint
            status, headers, _ = await completion(session, stack, LLAMA, {"test-epp-endpoint-selection": target})
            assert status == 200 and headers["x-poolgate-served-by"] == target
        served = {}
        for i in range(16):  # unsteered: compare with the picker's own record of each decision
            request_id = f"req-{i}-{time.monotonic_ns()}"
            for model in (LLAMA, QWEN):  # distinct prompts: no prefix affinity, ties spread over the pods
                status, headers, _ = await completion(
                    session,
                    stack,
                    model,
                    {"x-request-id": f"{model}-{request_id}"},
                    prompt=f"request {i}: {request_id}",
                )
                assert status == 200
                served[f"{model}-{request_id}"] = headers["x-poolgate-served-by"]
        wait_until(lambda: set(served) <= set(stack.picker_decisions()), message="picker log lines")
        decisions = stack.picker_decisions()
        for request_id, endpoint in served.items():
            assert decisions[request_id].split(",")[0] == endpoint
        assert {e.split(":")[0] for e in served.values()} == stack.llama_pods | stack.qwen_pods


@pytest.mark.parametrize("model", [LLAMA, QWEN])  # full-duplex (FailClose) and buffered (FailOpen) request bodies
async def test_streaming_and_plain_completions_through_both_body_modes(stack, model):
    async with aiohttp.ClientSession() as session:
        status, headers, body = await completion(session, stack, model)
        assert status == 200 and orjson.loads(body)["model"] == model
        status, headers, body = await completion(
            session, stack, model, stream=True, stream_options={"include_usage": True}
        )
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        assert body.rstrip().endswith(b"data: [DONE]") and body.count(b"data: ") >= 4


@pytest.mark.parametrize("alias, pool", [("alias", "llama"), ("q", "qwen")])  # full-duplex and buffered bodies
async def test_model_rewrite_goes_upstream_and_comes_back_as_the_requested_name(stack, alias, pool):
    async with aiohttp.ClientSession() as session:
        status, headers, body = await completion(session, stack, alias, {"x-pool": pool})
        assert status == 200, body  # the pods only serve the rewritten name
        assert orjson.loads(body)["model"] == alias
        assert int(headers.get("Content-Length", len(body))) == len(body)  # never a stale length
        status, _, body = await completion(
            session, stack, alias, {"x-pool": pool}, stream=True, stream_options={"include_usage": True}
        )
        events = [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]
        assert status == 200 and events and {e["model"] for e in events} == {alias}
        assert events[-1]["usage"]["completion_tokens"] == 4


async def test_picker_errors_reach_the_client_as_openai_json(stack):
    async with aiohttp.ClientSession() as session:
        for body, expected in (
            (b'{"model": "' + LLAMA.encode() + b'", "prompt": ', 400),  # router: invalid JSON
            (b'{"model": "' + LLAMA.encode() + b'", "prompt": "x", "n": [' + b"[" * 3000 + b"]", 400),
        ):
            async with session.post(stack.url, data=body, headers={"content-type": "application/json"}) as response:
                assert response.status == expected
                assert response.headers["content-type"] == "application/json"
                assert orjson.loads(await response.read())["error"]["code"] == expected
        status, _, body = await completion(session, stack, LLAMA, {"test-epp-endpoint-selection": "10.9.9.9"})
        assert status == 503 and orjson.loads(body)["error"]["type"] == "ServiceUnavailableError"


async def test_without_the_picker_failopen_still_answers_and_failclose_fails_fast(stack):
    stack.picker.kill()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                status, headers, _ = await completion(session, stack, QWEN)
                assert status == 200 and headers["x-poolgate-served-by"].split(":")[0] in stack.qwen_pods
            started = time.monotonic()
            status, _, _ = await completion(session, stack, LLAMA)
            assert status >= 500 and time.monotonic() - started < 2.0
    finally:
        assert stack.running.stack.supervisor.restart_exited() == [PICKER]
        stack.running.stack.supervisor.wait_ready(PICKER)
    async with aiohttp.ClientSession() as session:  # and picking resumes
        for _ in range(50):
            status, _, _ = await completion(session, stack, LLAMA)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200


async def test_the_model_router_routes_by_the_model_in_the_body(stack):
    async with aiohttp.ClientSession() as session:
        for model, pods in ((LLAMA, stack.llama_pods), (QWEN, stack.qwen_pods)):
            for _ in range(3):
                status, headers, body = await completion(session, stack, model, routed_by_model=True)
                assert status == 200, (model, headers, body)
                assert headers["x-poolgate-served-by"].split(":")[0] in pods
                assert orjson.loads(body)["model"] == model
        status, _, _ = await completion(session, stack, "unknown-model", routed_by_model=True)
        assert status == 404  # no route matches the model


async def test_model_routed_requests_are_picked_by_the_endpoint_picker(stack):
    async with aiohttp.ClientSession() as session:
        target = stack.running.endpoints("llama")[1]
        for _ in range(4):
            status, headers, _ = await completion(
                session, stack, LLAMA, {"test-epp-endpoint-selection": target}, routed_by_model=True
            )
            assert status == 200 and headers["x-poolgate-served-by"] == target
        status, _, body = await completion(session, stack, "alias", routed_by_model=True)  # rewritten by the picker
        assert status == 200 and orjson.loads(body)["model"] == "alias"
