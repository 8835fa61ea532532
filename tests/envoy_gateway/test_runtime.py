"""The Envoy Gateway target end to end on loopback: the objects it generates, turned into the xDS Envoy Gateway builds
from them (egxds.py) with its EnvoyPatchPolicy applied, run in the real Envoy with real `poolgate picker` processes
(one per pool: Envoy Gateway's ExtProc cannot name the pool) and simulated model servers.

- `llama` (FailClose, request bodies full-duplex): pods 127.0.0.60 and .61 live; 127.0.0.62 is a pod whose server
  dies after the picker has scraped it, so a pick of it must fall back to the next endpoint of the picker's list;
- `qwen` (FailOpen, request bodies buffered, responses streamed): pods 127.0.0.63 and .64.
A user HTTPRoute on an Envoy Gateway Gateway sends `x-pool: llama|qwen` to the pools and `x-pool: split` 80/20 to
both (each share picked by its own pool's picker, in its own failure mode). A second Envoy runs the same
xDS without the EnvoyPatchPolicy, as a cluster with EnvoyPatchPolicy disabled would. A third runs what
`--at-user-gateway` generates together with the user's own Gateway and HTTPRoute as Envoy Gateway serves them
(InferencePool backendRefs are invalid to it: those rules answer 500).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import orjson
import pytest
import yaml

from poolgate.egtarget import CalloutService, EnvoyGatewayOptions, translate_envoy_gateway
from poolgate.egtarget.objects import EDGE_ERRORS
from poolgate.envoy import envoy_binary, validate
from poolgate.translate.output import write_yaml
from tests.conftest import objects_from_yaml
from tests.envoy_gateway.egxds import EnvoyGatewayShape
from tests.support.processes import POOLGATE, Processes, free_port, wait_for_port, wait_until

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen3-8B"
SHARED_ADAPTER = "canary-adapter"
LLAMA_PICKER, QWEN_PICKER, MODEL_ROUTER = "127.0.1.60", "127.0.1.61", "127.0.1.62"
LLAMA_PODS, DOOMED_POD, QWEN_PODS = ("127.0.0.60", "127.0.0.61"), "127.0.0.62", ("127.0.0.63", "127.0.0.64")

OBJECTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: eg}}
spec: {{controllerName: gateway.envoyproxy.io/gatewayclass-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: inference, namespace: default}}
spec:
  gatewayClassName: eg
  listeners: [{{name: http, port: {listener}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: models, namespace: default}}
spec:
  parentRefs: [{{name: inference}}]
  rules:
  - matches: [{{headers: [{{name: x-pool, value: llama}}]}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: llama}}]
  - matches: [{{headers: [{{name: x-pool, value: qwen}}]}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: qwen}}]
  - matches: [{{headers: [{{name: X-Gateway-Model-Name, value: {llama_model}}}]}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: llama}}]
  - matches: [{{headers: [{{name: X-Gateway-Model-Name, value: {qwen_model}}}]}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: qwen}}]
  - matches: [{{headers: [{{name: x-pool, value: split}}]}}]
    backendRefs:
    - {{group: inference.networking.k8s.io, kind: InferencePool, name: llama, weight: 80}}
    - {{group: inference.networking.k8s.io, kind: InferencePool, name: qwen, weight: 20}}
---
apiVersion: v1
kind: Service
metadata: {{name: llama-epp, namespace: default}}
spec: {{clusterIP: {llama_picker}, ports: [{{port: {llama_picker_port}}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: qwen-epp, namespace: default}}
spec: {{clusterIP: {qwen_picker}, ports: [{{port: {qwen_picker_port}}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: model-router, namespace: default}}
spec: {{clusterIP: {model_router}, ports: [{{port: {model_router_port}}}]}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: llama, namespace: default}}
spec:
  selector: {{matchLabels: {{app: llama}}}}
  targetPorts: [{{number: {pod_port}}}]
  endpointPickerRef: {{name: llama-epp, port: {{number: {llama_picker_port}}}, failureMode: FailClose}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: qwen, namespace: default}}
spec:
  selector: {{matchLabels: {{app: qwen}}}}
  targetPorts: [{{number: {pod_port}}}]
  endpointPickerRef: {{name: qwen-epp, port: {{number: {qwen_picker_port}}}, failureMode: FailOpen}}
"""
POD = """---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}
status: {{podIP: {ip}, conditions: [{{type: Ready, status: "True"}}]}}
"""


class Stack:
    """The generated objects running in Envoy, the pickers and the simulated pods."""

    def __init__(self, processes: Processes, tmp_path) -> None:
        self.processes = processes
        self.tmp_path = tmp_path
        self.pod_port = free_port(LLAMA_PODS[0])
        self.listener = free_port("127.0.0.1")
        self.unpatched_listener = free_port("127.0.0.1")
        self.user_listener = free_port("127.0.0.1")
        self.ports = {host: free_port(host) for host in (LLAMA_PICKER, QWEN_PICKER, MODEL_ROUTER)}
        text = OBJECTS.format(
            listener=self.listener,
            pod_port=self.pod_port,
            llama_picker=LLAMA_PICKER,
            qwen_picker=QWEN_PICKER,
            llama_picker_port=self.ports[LLAMA_PICKER],
            qwen_picker_port=self.ports[QWEN_PICKER],
            model_router=MODEL_ROUTER,
            model_router_port=self.ports[MODEL_ROUTER],
            llama_model=LLAMA,
            qwen_model=QWEN,
        )
        for i, ip in enumerate(LLAMA_PODS + (DOOMED_POD,)):
            text += POD.format(name=f"llama-{i}", app="llama", ip=ip)
        for i, ip in enumerate(QWEN_PODS):
            text += POD.format(name=f"qwen-{i}", app="qwen", ip=ip)
        self.objects_path = tmp_path / "objects.yaml"
        self.objects_path.write_text(text)
        self.inputs = objects_from_yaml(text)
        router = CalloutService("default", "model-router", self.ports[MODEL_ROUTER], "model router Service")
        self.generated = translate_envoy_gateway(self.inputs, EnvoyGatewayOptions(model_router=router)).objects()
        at_user = translate_envoy_gateway(self.inputs, EnvoyGatewayOptions(at_user_gateway=True)).objects()
        self.at_user_gateway = user_objects(text) + at_user
        self.pickers: dict[str, object] = {}
        self.doomed = None

    def start(self) -> None:
        start = self.processes.start
        sims = ((LLAMA, LLAMA_PODS, "sim-llama"), (LLAMA, (DOOMED_POD,), "sim-doomed"), (QWEN, QWEN_PODS, "sim-qwen"))
        for model, ips, name in sims:
            listens = [arg for ip in ips for arg in ("--listen", f"{ip}:{self.pod_port}")]
            adapter = ["--lora", SHARED_ADAPTER, "--max-loras", "1"]  # a model both pools serve, for the split
            process = start(name, [*POOLGATE, "sim", "--no-latency", "--model", model, *adapter, *listens])
            self.doomed = process if name == "sim-doomed" else self.doomed
        self.start_picker("default/llama", LLAMA_PICKER)
        self.start_picker("default/qwen", QWEN_PICKER)
        self.start_picker(None, MODEL_ROUTER)
        envoys = [
            self.start_envoy("envoy", self.generated, self.listener, patched=True),
            self.start_envoy("envoy-unpatched", self.generated, self.unpatched_listener, patched=False),
            self.start_envoy("envoy-user-gateway", self.at_user_gateway, self.user_listener, patched=True),
        ]
        for ip in LLAMA_PODS + (DOOMED_POD,) + QWEN_PODS:
            wait_for_port(ip, self.pod_port)
        for host, port in self.ports.items():
            wait_for_port(host, port, process=self.pickers[host])
        for envoy, port in zip(envoys, (self.listener, self.unpatched_listener, self.user_listener)):
            wait_for_port("127.0.0.1", port, process=envoy)

    def start_envoy(self, name: str, objects: list[dict], port: int, patched: bool):
        """Envoy on `port` with the xDS Envoy Gateway would build from `objects`, with or without the
        EnvoyPatchPolicy applied."""
        config = self.tmp_path / f"{name}.yaml"
        shape = EnvoyGatewayShape(objects, self.inputs, self.tmp_path, "127.0.0.1", free_port("127.0.0.1"))
        bootstrap = shape.bootstrap(patch=patched)
        listener_address = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
        listener_address["port_value"] = port
        write_yaml(config, bootstrap)
        ok, output = validate(config)
        assert ok, output
        return self.processes.start(
            name, [envoy_binary(), "-c", str(config), "--use-dynamic-base-id", "--log-level", "warning"]
        )

    def start_picker(self, pool: str | None, host: str) -> None:
        """One picker per pool, serving only that pool (no gRPC metadata names the pool under Envoy Gateway), over
        TLS with a self-signed certificate: every request of these tests crosses Envoy's TLS connection to it."""
        self.pickers[host] = self.processes.start(
            f"picker-{pool.split('/')[1]}" if pool else "model-router",
            [
                *POOLGATE,
                "picker",
                "--objects-file",
                str(self.objects_path),
                *(["--pool", pool] if pool else ["--role", "model-router"]),
                "--grpc-host",
                host,
                "--grpc-port",
                str(self.ports[host]),
                "--grpc-health-port",
                str(free_port(host)),
                "--metrics-port",
                "-1",
                "--profile",
                "llmd-default",
                "--fallbacks",  # llmd-default sends one endpoint, as upstream; the fallback test needs the list
                "2",
                "--enable-conformance-steering",
                # scraped once a second, not every 50 ms: a killed pod's refused scrape would otherwise drop it from
                # the picks before the fallback test's request, which must find it still listed first
                "--refresh-metrics-interval",
                "1s",
                "--secure-serving",  # the picker's default upstream; Envoy reaches it through a TLS Backend
                "--log-level",
                "debug",
            ],
        )

    def endpoint(self, ip: str) -> str:
        return f"{ip}:{self.pod_port}"

    def decisions(self, host: str) -> dict[str, dict]:
        """request id -> the picker's log line for it (destination list, endpoint that served)."""
        out = {}
        for line in self.pickers[host].output().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("msg") == "request" and entry.get("request_id"):
                    out[entry["request_id"]] = entry
        return out


def user_objects(text: str) -> list[dict]:
    """The user's Gateway and HTTPRoute as Envoy Gateway serves them: InferencePool backendRefs are an invalid kind to
    it, so those rules keep their matches and lose their backends (500)."""
    out = []
    for doc in yaml.safe_load_all(text):
        if doc and doc["kind"] in ("Gateway", "HTTPRoute"):
            for rule in doc["spec"].get("rules", []):
                rule["backendRefs"] = [r for r in rule["backendRefs"] if r.get("kind") != "InferencePool"]
            out.append(doc)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("envoy-gateway")
    with Processes(tmp_path / "logs") as processes:
        stack = Stack(processes, tmp_path)
        stack.start()
        yield stack


async def completion(
    session, stack, pool: str, headers=None, prompt="Tell me about picking endpoints", patched: bool = True, port=None
):
    body = {"model": {"llama": LLAMA, "qwen": QWEN}.get(pool, SHARED_ADAPTER), "prompt": prompt, "max_tokens": 4}
    sent = {"content-type": "application/json", "x-pool": pool, **(headers or {})}
    port = port or (stack.listener if patched else stack.unpatched_listener)
    async with session.post(
        f"http://127.0.0.1:{port}/v1/completions", data=orjson.dumps(body), headers=sent
    ) as response:
        return response.status, response.headers.copy(), await response.read()


@pytest.mark.parametrize("patched", [True, False], ids=["with-patch-policy", "endpoint-override-only"])
async def test_requests_land_on_the_endpoint_the_picker_chose(stack, patched):
    async with aiohttp.ClientSession() as session:
        for pool, pods in (("llama", LLAMA_PODS), ("qwen", QWEN_PODS)):  # full-duplex and buffered bodies
            for ip in pods + pods:
                target = stack.endpoint(ip)
                status, headers, body = await completion(
                    session, stack, pool, {"test-epp-endpoint-selection": target}, patched=patched
                )
                assert status == 200, body
                assert headers["x-poolgate-served-by"] == target


async def test_at_the_users_own_gateway_the_companion_outranks_the_users_500_and_picks_hold_by_metadata(stack):
    """`--at-user-gateway`: the user's own listener and route (its pool rules answer 500 under Envoy Gateway) plus
    the companion rules with one more header match; requests land on the picker's choice (the override reads envoy.lb
    metadata only: see the last test for a client's destination header), and a split splits."""
    async with aiohttp.ClientSession() as session:
        for pool, pods in (("llama", LLAMA_PODS), ("qwen", QWEN_PODS)):
            for ip in pods + pods:
                target = stack.endpoint(ip)
                selection = {"test-epp-endpoint-selection": target}
                status, headers, body = await completion(session, stack, pool, selection, port=stack.user_listener)
                assert status == 200, body
                assert headers["x-poolgate-served-by"] == target
        on_llama = 0
        for i in range(100):
            status, headers, body = await completion(session, stack, "split", prompt=f"q{i}", port=stack.user_listener)
            assert status == 200, body
            on_llama += headers["x-poolgate-served-by"] in {stack.endpoint(ip) for ip in LLAMA_PODS + (DOOMED_POD,)}
        assert 65 <= on_llama <= 95  # 80/20


async def test_a_dead_primary_falls_back_to_the_next_endpoint_and_the_picker_learns_which_served(stack):
    doomed, fallback = stack.endpoint(DOOMED_POD), stack.endpoint(LLAMA_PODS[1])
    prompt = "a prompt the doomed pod has cached " * 8
    async with aiohttp.ClientSession() as session:
        # The doomed pod serves this prompt while alive: the picker credits it with the prompt's prefix blocks.
        status, headers, _ = await completion(session, stack, "llama", {"test-epp-endpoint-selection": doomed}, prompt)
        assert status == 200 and headers["x-poolgate-served-by"] == doomed
        stack.doomed.kill(signal.SIGKILL)
        # Its last metrics stay, so the prefix makes it the primary; Envoy must retry on the fallback.
        request_id = f"fallback-{time.monotonic_ns()}"
        status, headers, body = await completion(
            session,
            stack,
            "llama",
            {"test-epp-endpoint-selection": f"{doomed},{fallback}", "x-request-id": request_id},
            prompt,
        )
    assert status == 200, body
    assert headers["x-poolgate-served-by"] == fallback
    wait_until(lambda: request_id in stack.decisions(LLAMA_PICKER), message="the picker's log line")
    decision = stack.decisions(LLAMA_PICKER)[request_id]
    assert decision["destination"].split(",")[:2] == [doomed, fallback]
    assert decision["served"] == fallback  # override_host's selected_host_key, forwarded in envoy.lb


async def test_a_split_across_pools_follows_the_weights_and_each_share_is_picked_by_its_own_pools_picker(stack):
    requests, concurrency = 1000, 8
    served: dict[str, str] = {}  # request id -> the endpoint that answered

    async def one(session, i: int) -> None:
        request_id = f"split-{i}-{time.monotonic_ns()}"
        status, headers, body = await completion(session, stack, "split", {"x-request-id": request_id}, f"q{i}")
        assert status == 200, body
        served[request_id] = headers["x-poolgate-served-by"]

    async with aiohttp.ClientSession() as session:
        for start in range(0, requests, concurrency):
            await asyncio.gather(*(one(session, i) for i in range(start, min(start + concurrency, requests))))
    llama = {stack.endpoint(ip) for ip in LLAMA_PODS + (DOOMED_POD,)}
    qwen = {stack.endpoint(ip) for ip in QWEN_PODS}
    on_llama = sum(endpoint in llama for endpoint in served.values())
    assert sum(endpoint in qwen for endpoint in served.values()) == requests - on_llama
    print(f"split 80/20 over {requests} requests: llama {on_llama}, qwen {requests - on_llama}")
    assert abs(on_llama / requests - 0.80) < 0.04
    # every request was picked by the picker of the pool that served it, and only by that one
    wait_until(lambda: len(stack.decisions(LLAMA_PICKER).keys() & served.keys()) >= on_llama, message="llama's log")
    wait_until(
        lambda: len(stack.decisions(QWEN_PICKER).keys() & served.keys()) >= requests - on_llama, message="qwen's"
    )
    llama_picked = stack.decisions(LLAMA_PICKER).keys() & served.keys()
    qwen_picked = stack.decisions(QWEN_PICKER).keys() & served.keys()
    assert llama_picked == {r for r, endpoint in served.items() if endpoint in llama}
    assert qwen_picked == {r for r, endpoint in served.items() if endpoint in qwen}


async def test_body_based_model_routing_runs_the_model_router_then_only_the_routed_pools_picker(stack):
    """No x-pool header: the request first matches the model routing rule; the model router names the body's model,
    the route is re-matched to that model's rule, and only that pool's picker picks. The doomed pod is one of llama's
    endpoints: alive unless the fallback test ran first on this stack (pytest-xdist gives each worker its own)."""
    async with aiohttp.ClientSession() as session:
        for model, pods, own, other in (
            (LLAMA, LLAMA_PODS + (DOOMED_POD,), LLAMA_PICKER, QWEN_PICKER),
            (QWEN, QWEN_PODS, QWEN_PICKER, LLAMA_PICKER),
        ):
            request_id = f"model-{time.monotonic_ns()}"
            body = {"model": model, "prompt": "route me by my model", "max_tokens": 4}
            sent = {"content-type": "application/json", "x-request-id": request_id, "x-gateway-model-name": "forged"}
            async with session.post(
                f"http://127.0.0.1:{stack.listener}/v1/completions", data=orjson.dumps(body), headers=sent
            ) as response:
                assert response.status == 200, await response.read()
                served = response.headers["x-poolgate-served-by"]
                assert served in {stack.endpoint(ip) for ip in pods}
                assert response.headers["x-poolgate-served-model"] == model
            wait_until(lambda r=request_id, o=own: r in stack.decisions(o), message="the routed pool's picker log")
            assert stack.decisions(own)[request_id]["served"] == served
            assert request_id not in stack.decisions(other)


async def test_the_pickers_own_json_refusals_pass_unchanged(stack):
    """Only Envoy's plain-text and empty local replies are rewritten: a picker's 503 keeps its own message."""
    async with aiohttp.ClientSession() as session:
        status, headers, body = await completion(session, stack, "llama", {"test-epp-endpoint-selection": "10.9.9.9:1"})
    assert (status, headers["content-type"]) == (503, "application/json"), body
    error = orjson.loads(body)["error"]
    assert error["code"] == 503 and error["message"] != EDGE_ERRORS[503]


async def test_without_pickers_failopen_balances_and_failclose_refuses(stack):
    for host in (QWEN_PICKER, LLAMA_PICKER):
        stack.pickers[host].kill(signal.SIGKILL)
    async with aiohttp.ClientSession() as session:
        pinned = stack.endpoint(QWEN_PODS[1])
        # a client-sent destination header is stripped before anything reads it (sibling), or read by nothing (at
        # the user's Gateway, where nothing strips it: no endpoint override there trusts the header)
        for port in (stack.listener, stack.user_listener):
            served = set()
            for _ in range(16):
                pin = {"x-gateway-destination-endpoint": pinned}
                status, headers, _ = await completion(session, stack, "qwen", pin, port=port)
                assert status == 200
                served.add(headers["x-poolgate-served-by"])
            assert served == {stack.endpoint(ip) for ip in QWEN_PODS}
        started = time.monotonic()
        status, headers, body = await completion(session, stack, "llama")
        assert time.monotonic() - started < 2.0
        assert (status, headers["content-type"]) == (503, "application/json"), body  # statusOnError, responseOverride
        error = orjson.loads(body)["error"]
        assert (error["code"], error["type"]) == (503, "ServiceUnavailableError")
