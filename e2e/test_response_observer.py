"""Under `poolgate up`, and on Kubernetes for managed pickers, a picker that does not edit responses picks on one
ext_proc call and follows each response on a second, observe-only call. Through the real Envoy, the picker still sees
every response (its TTFT, its usage, its end) and releases every booking, a client that leaves mid-stream included;
and a response on its way finishes when a FailClose pool's picker dies."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hooks import envoy, gateway
from hooks.settings import HookSettings
from poolgate.api.builders import chat, pool, pool_ref, sim_deployment
from poolgate.api.contract import MANAGED_PICKER_ANNOTATION
from poolgate.envoy import envoy_binary
from poolgate.load import faults
from poolgate.load.generator import Load
from poolgate.translate.naming import pool_endpoints_service
from poolgate.translate.output import swap_directory
from poolgate.up.stack import PICKER_METRICS_PORT
from tests.hooks import cases
from tests.hooks.related_sizes import related
from tests.support.dns import DnsServer
from tests.support.hookenvoy import local_files, observed_pools
from tests.support.processes import Processes, free_port, wait_until

pytestmark = pytest.mark.xdist_group("response-observer")

SLOW_SIM = ("--decode-ms", "20", "--prefill-overhead-ms", "2", "--prefill-ms-per-token", "0")


def picker_samples(running) -> dict[str, float]:
    """The picker's metric samples summed over labels, by sample name."""
    host = faults.picker_address(running.stack, "epp")
    return samples(f"http://{host}:{PICKER_METRICS_PORT}/metrics")


def streams_running(running, pool_name: str) -> float:
    """How many requests the pool's simulated pods are generating now, by their own metrics."""
    pages = (samples(f"http://{endpoint}/metrics") for endpoint in running.endpoints(pool_name))
    return sum(page.get("vllm:num_requests_running", 0.0) for page in pages)


def samples(url: str) -> dict[str, float]:
    """The metric samples of a Prometheus page summed over labels, by sample name."""
    text = httpx.get(url, timeout=5).text
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


def test_the_gateway_hooks_envoy_finishes_a_managed_failclose_pools_streams_when_its_picker_dies(start_stack, tmp_path):
    """Kubernetes: the Envoy configuration the Gateway hook declares (its ConfigMap, with Service names answered by a
    local DNS server as the cluster's would) in the real Envoy, with real pickers and simulated pods. Streams are on
    their way in two FailClose pools when both pickers are killed: the managed pool's (observed apart from the pick)
    all finish; the pool with a picker of the user's (kept on the picking call) has its streams cut; and new
    requests to the managed pool are refused at once, naming it (the pick keeps the pool's failure mode)."""
    annotated = pool("managed", picker="managed-epp", failure_mode="FailClose")
    annotated["metadata"]["annotations"] = {MANAGED_PICKER_ANNOTATION: "true"}
    rules = [
        {"matches": [{"headers": [{"name": "x-pool", "value": name}]}], "backendRefs": [pool_ref(name)]}
        for name in ("managed", "own")
    ]
    cluster = [
        *faults.gateway_objects(rules),
        annotated,
        *faults.pool_objects("own", "own-epp", "FailClose"),
        sim_deployment("managed", 2, args=SLOW_SIM),
        sim_deployment("own", 2, args=SLOW_SIM),
    ]
    running = start_stack(*cluster, picker_args=())  # the pickers and pods (its own Envoy stays unused)

    settings = HookSettings()
    parent = next(o for o in cluster if o["kind"] == "Gateway")
    parent["spec"]["listeners"][0]["port"] = listener_port = free_port("127.0.0.1")
    found = related(gateway.customize, parent, cluster, settings)  # what Metacontroller sends the sync hook
    answer = gateway.sync(cases.sync_request("poolgate-gateways", parent, found), settings)
    assert observed_pools(answer) == {"default/managed": True, "default/own": False}

    domain = settings.cluster_domain
    records = {
        f"{picker}.default.svc.{domain}": [faults.picker_address(running.stack, picker)]
        for picker in ("managed-epp", "own-epp")
    }
    for name in ("managed", "own"):
        ips = sorted({e.rpartition(":")[0] for e in running.endpoints(name)})
        records[f"{pool_endpoints_service(name)}.default.svc.{domain}"] = ips
    config_dir, admin, ready = tmp_path / "hook-envoy", free_port("127.0.0.1"), free_port("127.0.0.1")
    with DnsServer(records) as dns, Processes(tmp_path / "logs") as processes:
        swap_directory(config_dir, local_files(answer, config_dir, admin, ready, settings, dns.address))
        envoy_process = processes.start("envoy", [envoy_binary(), *envoy.envoy_args(str(config_dir), "warning")])
        url = f"http://127.0.0.1:{listener_port}/v1/chat/completions"

        def answered(name: str) -> bool:
            try:
                return httpx.post(url, json=chat(), headers={"x-pool": name}, timeout=10).status_code == 200
            except httpx.TransportError:
                assert envoy_process.running, envoy_process.output()
                return False

        wait_until(lambda: answered("managed") and answered("own"), 30, 0.2, "the hook's Envoy serving both pools")
        streams = {
            name: Load(
                url,
                50,
                lambda i: chat(content=f"stream {i}", max_tokens=250, stream=True),
                headers=lambda i, name=name: {"x-pool": name},
                timeout=30,
                limit=6,
            ).start()
            for name in ("managed", "own")
        }
        wait_until(  # every stream is picked and on its way (~5 s each: 250 tokens of 20 ms)
            lambda: all(streams_running(running, name) == 6 for name in streams), 20, 0.1, "6 streams per pool"
        )
        killed_at = time.monotonic()
        for picker in ("managed-epp", "own-epp"):
            running.child(f"picker/default/{picker}").kill()
        asked_at = time.monotonic()
        refused = httpx.post(url, json=chat(), headers={"x-pool": "managed"}, timeout=10)
        refused_s = time.monotonic() - asked_at
        outcomes = {name: load.stop() for name, load in streams.items()}

    in_flight = {
        name: [o for o in done if streams[name].t0 + o.started < killed_at < streams[name].t0 + o.ended]
        for name, done in outcomes.items()
    }
    assert len(in_flight["managed"]) == len(outcomes["managed"]) == 6  # all streaming at the kill
    assert all(o.ok for o in outcomes["managed"]), [(o.status, o.error) for o in outcomes["managed"]]  # 0 cut
    cut = [o for o in in_flight["own"] if o.status == 200 and o.error]
    assert cut, [(o.status, o.error) for o in outcomes["own"]]  # the picking call's failure mode cut them
    assert refused.status_code == 503 and refused_s < 1.0, (refused.status_code, refused_s, refused.text)
    assert "default/managed" in refused.json()["error"]["message"]
