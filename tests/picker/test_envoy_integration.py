"""The real Envoy, the real picker processes and simulated pods, from objects translated by poolgate's translator.

Two pools behind one Gateway:
- `llama` (FailClose, request bodies full-duplex): pods 127.0.0.50 and .51; an InferenceModelRewrite maps `alias`
  to the served model;
- `qwen` (FailOpen, so request bodies BUFFERED): pods 127.0.0.52 and .53.
One endpoint picker process serves both pools (Envoy names the pool in the gRPC metadata). Rules match the header
`x-pool: llama|qwen` first, then the model name: a `poolgate picker --role model-router` process sets
X-Gateway-Model-Name from the body for every request of the listener.
"""

import asyncio
import json
import signal
import time

import aiohttp
import orjson
import pytest

from poolgate.envoy import envoy_binary
from poolgate.translate import TranslateOptions, translate
from poolgate.translate.ir import Address
from poolgate.translate.output import write_yaml
from tests.conftest import objects_from_yaml
from tests.support.processes import POOLGATE, Processes, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.xdist_group(name="picker-envoy")   # one stack per module, on one worker

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen3-8B"
PICKER_IP, ROUTER_IP = "127.0.1.50", "127.0.1.51"
LLAMA_PODS, QWEN_PODS = ("127.0.0.50", "127.0.0.51"), ("127.0.0.52", "127.0.0.53")

OBJECTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: poolgate}}
spec: {{controllerName: poolgate.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: poolgate
  listeners: [{{name: http, port: {listener}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: models, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches:
    - headers: [{{name: x-pool, value: llama}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: llama}}]
  - matches:
    - headers: [{{name: x-pool, value: qwen}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: qwen}}]
  - matches:
    - headers: [{{type: RegularExpression, name: X-Gateway-Model-Name, value: 'meta-llama/Llama-3\\.1-8B-Instruct|alias'}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: llama}}]
  - matches:
    - headers: [{{name: X-Gateway-Model-Name, value: Qwen/Qwen3-8B}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: qwen}}]
---
apiVersion: v1
kind: Service
metadata: {{name: epp, namespace: default}}
spec: {{clusterIP: {picker_ip}, ports: [{{port: {picker_port}}}]}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: llama, namespace: default}}
spec:
  selector: {{matchLabels: {{app: llama}}}}
  targetPorts: [{{number: {pod_port}}}]
  endpointPickerRef: {{name: epp, port: {{number: {picker_port}}}, failureMode: FailClose}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: qwen, namespace: default}}
spec:
  selector: {{matchLabels: {{app: qwen}}}}
  targetPorts: [{{number: {pod_port}}}]
  endpointPickerRef: {{name: epp, port: {{number: {picker_port}}}, failureMode: FailOpen}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {{name: alias, namespace: default}}
spec:
  poolRef: {{name: llama}}
  rules:
  - matches: [{{model: {{value: alias}}}}]
    targets: [{{modelRewrite: {llama}}}]
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata: {{name: qwen-alias, namespace: default}}
spec:
  poolRef: {{name: qwen}}
  rules:
  - matches: [{{model: {{value: q}}}}]
    targets: [{{modelRewrite: {qwen}}}]
"""
POD = """---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}
status: {{podIP: {ip}, conditions: [{{type: Ready, status: "True"}}]}}
"""


class Stack:
    """The running processes and where they listen."""

    def __init__(self, processes: Processes, tmp_path) -> None:
        self.processes = processes
        self.tmp_path = tmp_path
        self.pod_port = free_port(LLAMA_PODS[0])
        self.picker_port = free_port(PICKER_IP)
        self.picker_health = free_port(PICKER_IP)
        self.router_port = free_port(ROUTER_IP)
        self.listener = free_port("127.0.0.1")
        self.admin = free_port("127.0.0.1")
        text = OBJECTS.format(listener=self.listener, picker_ip=PICKER_IP, picker_port=self.picker_port,
                              pod_port=self.pod_port, llama=LLAMA, qwen=QWEN)
        for i, ip in enumerate(LLAMA_PODS):
            text += POD.format(name=f"llama-{i}", app="llama", ip=ip)
        for i, ip in enumerate(QWEN_PODS):
            text += POD.format(name=f"qwen-{i}", app="qwen", ip=ip)
        self.objects_path = tmp_path / "objects.yaml"
        self.objects_path.write_text(text)
        self.picker = None

    def start(self) -> None:
        start = self.processes.start
        for model, ips in ((LLAMA, LLAMA_PODS), (QWEN, QWEN_PODS)):
            listens = [arg for ip in ips for arg in ("--listen", f"{ip}:{self.pod_port}")]
            start(f"sim-{model.split('/')[0]}", [*POOLGATE, "sim", "--no-latency", "--model", model, *listens])
        self.start_picker()
        router = start("router", [*POOLGATE, "picker", "--role", "model-router", "--objects-file",
                                  str(self.objects_path), "--grpc-host", ROUTER_IP, "--grpc-port",
                                  str(self.router_port), "--grpc-health-port", str(free_port(ROUTER_IP)),
                                  "--metrics-port", "-1"])
        options = TranslateOptions(listener_address="127.0.0.1", admin_address=Address("127.0.0.1", self.admin),
                                   model_router=Address(ROUTER_IP, self.router_port))
        bootstrap = translate(objects_from_yaml(self.objects_path.read_text()), options).bootstrap()
        write_yaml(self.tmp_path / "envoy.yaml", bootstrap)
        envoy = start("envoy", [envoy_binary(), "-c", str(self.tmp_path / "envoy.yaml"), "--use-dynamic-base-id",
                                "--log-level", "warning"])
        for ip in LLAMA_PODS + QWEN_PODS:
            wait_for_port(ip, self.pod_port)
        wait_for_port(ROUTER_IP, self.router_port, process=router)
        wait_for_port("127.0.0.1", self.listener, process=envoy)

    def start_picker(self) -> None:
        self.picker = self.processes.start("picker", [
            *POOLGATE, "picker", "--objects-file", str(self.objects_path), "--grpc-host", PICKER_IP,
            "--grpc-port", str(self.picker_port), "--grpc-health-port", str(self.picker_health),
            "--metrics-port", "-1", "--profile", "llmd-default", "--enable-conformance-steering",
            "--log-level", "debug"])
        wait_for_port(PICKER_IP, self.picker_port, process=self.picker)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener}/v1/completions"

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
    tmp_path = tmp_path_factory.mktemp("envoy")
    with Processes(tmp_path / "logs") as processes:
        stack = Stack(processes, tmp_path)
        stack.start()
        yield stack


async def completion(session, stack, model: str, headers=None, stream=False, routed_by_model=False,
                     **extra) -> tuple[int, dict, bytes]:
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
        for pod in LLAMA_PODS + LLAMA_PODS:   # steered: the picker's choice is the named endpoint
            target = f"{pod}:{stack.pod_port}"
            status, headers, _ = await completion(session, stack, LLAMA, {"test-epp-endpoint-selection": target})
            assert status == 200 and headers["x-poolgate-served-by"] == target
        served = {}
        for i in range(16):   # unsteered: compare with the picker's own record of each decision
            request_id = f"req-{i}-{time.monotonic_ns()}"
            for model in (LLAMA, QWEN):   # distinct prompts: no prefix affinity, ties spread over the pods
                status, headers, _ = await completion(session, stack, model, {"x-request-id": f"{model}-{request_id}"},
                                                      prompt=f"request {i}: {request_id}")
                assert status == 200
                served[f"{model}-{request_id}"] = headers["x-poolgate-served-by"]
        wait_until(lambda: set(served) <= set(stack.picker_decisions()), message="picker log lines")
        decisions = stack.picker_decisions()
        for request_id, endpoint in served.items():
            assert decisions[request_id].split(",")[0] == endpoint
        assert {e.split(":")[0] for e in served.values()} == set(LLAMA_PODS + QWEN_PODS)


@pytest.mark.parametrize("model", [LLAMA, QWEN])   # full-duplex (FailClose) and buffered (FailOpen) request bodies
async def test_streaming_and_plain_completions_through_both_body_modes(stack, model):
    async with aiohttp.ClientSession() as session:
        status, headers, body = await completion(session, stack, model)
        assert status == 200 and orjson.loads(body)["model"] == model
        status, headers, body = await completion(session, stack, model, stream=True,
                                                 stream_options={"include_usage": True})
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        assert body.rstrip().endswith(b"data: [DONE]") and body.count(b"data: ") >= 4


@pytest.mark.parametrize("alias, pool", [("alias", "llama"), ("q", "qwen")])   # full-duplex and buffered bodies
async def test_model_rewrite_goes_upstream_and_comes_back_as_the_requested_name(stack, alias, pool):
    async with aiohttp.ClientSession() as session:
        status, headers, body = await completion(session, stack, alias, {"x-pool": pool})
        assert status == 200, body   # the pods only serve the rewritten name
        assert orjson.loads(body)["model"] == alias
        assert int(headers.get("Content-Length", len(body))) == len(body)   # never a stale length
        status, _, body = await completion(session, stack, alias, {"x-pool": pool}, stream=True,
                                           stream_options={"include_usage": True})
        events = [orjson.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]
        assert status == 200 and events and {e["model"] for e in events} == {alias}
        assert events[-1]["usage"]["completion_tokens"] == 4


async def test_picker_errors_reach_the_client_as_openai_json(stack):
    async with aiohttp.ClientSession() as session:
        for body, expected in ((b'{"model": "' + LLAMA.encode() + b'", "prompt": ', 400),   # router: invalid JSON
                               (b'{"model": "' + LLAMA.encode() + b'", "prompt": "x", "n": [' + b"[" * 3000 + b"]", 400)):
            async with session.post(stack.url, data=body, headers={"content-type": "application/json"}) as response:
                assert response.status == expected
                assert response.headers["content-type"] == "application/json"
                assert orjson.loads(await response.read())["error"]["code"] == expected
        status, _, body = await completion(session, stack, LLAMA, {"test-epp-endpoint-selection": "10.9.9.9"})
        assert status == 503 and orjson.loads(body)["error"]["type"] == "ServiceUnavailableError"


async def test_without_the_picker_failopen_still_answers_and_failclose_fails_fast(stack):
    stack.picker.kill(signal.SIGKILL)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                status, headers, _ = await completion(session, stack, QWEN)
                assert status == 200 and headers["x-poolgate-served-by"].split(":")[0] in QWEN_PODS
            started = time.monotonic()
            status, _, _ = await completion(session, stack, LLAMA)
            assert status >= 500 and time.monotonic() - started < 2.0
    finally:
        stack.start_picker()
    async with aiohttp.ClientSession() as session:   # and picking resumes
        for _ in range(50):
            status, _, _ = await completion(session, stack, LLAMA)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200


async def test_the_model_router_routes_by_the_model_in_the_body(stack):
    async with aiohttp.ClientSession() as session:
        for model, pods in ((LLAMA, LLAMA_PODS), (QWEN, QWEN_PODS)):
            for _ in range(3):
                status, headers, body = await completion(session, stack, model, routed_by_model=True)
                assert status == 200, (model, headers, body)
                assert headers["x-poolgate-served-by"].split(":")[0] in pods
                assert orjson.loads(body)["model"] == model
        status, _, _ = await completion(session, stack, "unknown-model", routed_by_model=True)
        assert status == 404   # no route matches the model


async def test_model_routed_requests_are_picked_by_the_endpoint_picker(stack):
    async with aiohttp.ClientSession() as session:
        target = f"{LLAMA_PODS[1]}:{stack.pod_port}"
        for _ in range(4):
            status, headers, _ = await completion(session, stack, LLAMA, {"test-epp-endpoint-selection": target},
                                                  routed_by_model=True)
            assert status == 200 and headers["x-poolgate-served-by"] == target
        status, _, body = await completion(session, stack, "alias", routed_by_model=True)   # rewritten by the picker
        assert status == 200 and orjson.loads(body)["model"] == "alias"
