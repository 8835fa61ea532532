"""What a client meets at the gateway's edge on the real stack: every answer the gateway gives itself is an
OpenAI-style JSON error with the right status, oversized headers stop at Envoy, client-sent control headers are
stripped, and a managed picker may have any name."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import replace

import openai
import pytest
import yaml

from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, pool_ref, route, service, sim_deployment
from poolgate.api.contract import (
    GATEWAY_ONLY_HEADERS,
    LLM_D_MODEL_REWRITE_HEADER,
    MANAGED_PICKER_ANNOTATION,
    MODEL_REWRITE_HEADER,
    SERVED_BY_HEADER,
    SERVED_MODEL_HEADER,
)
from poolgate.translate.policy import MAX_REQUEST_HEADERS_KB
from poolgate.up.processes import POOLGATE, port_holder, port_open, wait_until
from poolgate.up.stack import Stack
from poolgate.up.summary import status_problems
from tests.conftest import REPO
from tests.support.stacks import next_block, quickstart_objects

pytestmark = pytest.mark.xdist_group("e2e-edge")
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def quickstart(start_stack):
    stack = start_stack(*quickstart_objects())
    return stack, stack.url("default/inference-gateway")


def model_route(name: str, gw: str, model: str, target: str) -> dict:
    """An HTTPRoute of Gateway `gw` sending requests for `model` to pool `target`."""
    match = {"path": {"value": "/v1"}, "headers": [{"name": "X-Gateway-Model-Name", "value": model}]}
    return route(name, parents=[{"name": gw}], rules=[{"matches": [match], "backendRefs": [pool_ref(target)]}])


def error_of(response, status: int, code: str) -> str:
    """The message of an OpenAI-style JSON error with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.headers
    error = response.json()["error"]
    assert error["code"] == code and error["type"] and "param" in error, error
    return error["message"]


def test_unknown_and_missing_models_get_openai_errors(quickstart, http):
    _stack, url = quickstart
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "`no-such-model`" in str(raised.value) and raised.value.body["code"] == "model_not_found"
    response = http.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert "names no `model`" in error_of(response, 400, "missing_model")
    empty = http.post(f"{url}/v1/chat/completions", content=b"", headers={"content-type": "application/json"})
    error_of(empty, 400, "missing_model")
    assert "GET /nowhere" in error_of(http.get(f"{url}/nowhere"), 404, "route_not_found")
    # a model the gateway serves still gets through, with the picker's own answers untouched
    assert http.post(f"{url}/v1/chat/completions", json=chat(LLAMA)).status_code == 200
    bad = http.post(f"{url}/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    # a path no parser reads (vLLM's tokenizer) is routed by its JSON body's model too: a llama pod answers it
    tokenize = http.post(f"{url}/v1/tokenize", json={"model": LLAMA, "prompt": "hi"})
    assert SERVED_BY_HEADER in tokenize.headers, tokenize.text


def test_a_fail_close_pool_whose_picker_is_down_answers_503_naming_the_pool(quickstart, http):
    stack, url = quickstart
    stack.child("picker/default/llama-epp").kill()
    message = error_of(http.post(f"{url}/v1/chat/completions", json=chat(LLAMA)), 503, "picker_unavailable")
    assert "default/llama" in message


def test_oversized_headers_stop_at_envoy_with_a_json_431(start_stack, http):
    stack = start_stack(
        gateway_class(), gateway(listeners=listener()), route(), pool(), service(), sim_deployment("pool")
    )
    url = stack.url()
    just_under = "a" * (MAX_REQUEST_HEADERS_KB * 1024 - 600)
    assert http.post(f"{url}/v1/chat/completions", json=chat(), headers={"x-big": just_under}).status_code == 200
    for size in (MAX_REQUEST_HEADERS_KB * 1024, 9000, 20_000, 100_000):  # each over the limit; 9,000 > aiohttp's
        response = http.post(f"{url}/v1/chat/completions", json=chat(), headers={"x-big": "a" * size})
        assert "headers are larger" in error_of(response, 431, "request_headers_too_large")
        assert "aaaa" not in response.text  # the header is not echoed back


def test_underscore_headers_are_dropped_so_they_cannot_pass_for_control_headers(start_stack, http):
    stack = start_stack(
        gateway_class(), gateway(listeners=listener()), route(), pool(), service(), sim_deployment("pool")
    )
    url = stack.url()
    forged = MODEL_REWRITE_HEADER.replace("-", "_")  # read as the rewrite header by servers that map `_` to `-`
    assert http.post(f"{url}/v1/chat/completions", json=chat(), headers={forged: "other"}).status_code == 200
    admin = stack.stack.admin
    stats = http.get(f"http://{admin.host}:{admin.port}/stats", params={"filter": "dropped_headers_with_underscores"})
    assert "\nhttp1.dropped_headers_with_underscores: 1\n" in f"\n{stats.text}\n", stats.text


def test_client_sent_rewrite_headers_cannot_bypass_a_rewrite_canary(quickstart, http):
    _stack, url = quickstart
    assert MODEL_REWRITE_HEADER in GATEWAY_ONLY_HEADERS and LLM_D_MODEL_REWRITE_HEADER in GATEWAY_ONLY_HEADERS
    for header in (MODEL_REWRITE_HEADER, LLM_D_MODEL_REWRITE_HEADER):
        served = set()
        for _ in range(20):
            response = http.post(
                f"{url}/v1/chat/completions", json=chat("food-review"), headers={header: "food-review-v2"}
            )
            assert response.status_code == 200, response.text
            served.add(response.headers[SERVED_MODEL_HEADER])
        assert "food-review-v1" in served, (header, served)  # the 90/10 canary still applies


def test_a_managed_picker_may_have_any_name(start_stack, http):
    managed = pool(picker="my-own-picker")
    managed["metadata"]["annotations"] = {MANAGED_PICKER_ANNOTATION: "true"}
    stack = start_stack(gateway_class(), gateway(listeners=listener()), route(), managed, sim_deployment("pool"))
    response = http.post(f"{stack.url()}/v1/chat/completions", json=chat())
    assert response.status_code == 200, response.text
    assert response.headers["x-conformance-test-selected-endpoint"] in stack.endpoints("pool")
    assert "picker/default/my-own-picker" in stack.stack.supervisor.children


def test_an_invalid_backend_answers_json_naming_the_object_whose_status_says_why(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway(listeners=listener()),
        route(rules=[{"backendRefs": [pool_ref("pool")]}]),
        pool(picker="missing"),
        sim_deployment("pool"),
    )
    message = error_of(http.post(f"{stack.url()}/v1/chat/completions", json=chat()), 500, "route_not_served")
    assert "InferencePool default/pool" in message and "missing" in message
    conditions = {c["type"]: c for c in stack.status("InferencePool", "pool")["parents"][0]["conditions"]}
    assert conditions["ResolvedRefs"]["status"] == "False" and "missing" in conditions["ResolvedRefs"]["message"]
    # poolgate up's summary names the same object
    problems = status_problems(stack.stack.status.translation.status())
    assert any(p.startswith("InferencePool default/pool: ResolvedRefs False") and "missing" in p for p in problems)


def test_models_list_through_the_gateway_shows_every_model_a_client_can_ask_for(quickstart, http):
    stack, url = quickstart
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    listed = list(client.models.list())
    models = {m.id: m for m in listed}
    assert set(models) == {LLAMA, "food-review-v1", "food-review-v2", "food-review", "Qwen/Qwen3-8B"}
    assert len(listed) == len(models)  # each once, though every pod of a pool reports it
    assert models["food-review-v1"].parent == LLAMA and models[LLAMA].parent is None  # LoRA adapters name their base
    assert models["food-review"].owned_by == "poolgate"  # the InferenceModelRewrite's name
    for name in [n for n in stack.stack.supervisor.children if n.startswith("pod/default/qwen")]:
        stack.child(name).kill()  # the qwen pool goes down: its model is left out, the rest still listed
    response = http.get(f"{url}/v1/models")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert {m["id"] for m in response.json()["data"]} == set(models) - {"Qwen/Qwen3-8B"}


def test_models_list_names_only_the_pools_of_that_gateway(start_stack, http):
    stack = start_stack(
        gateway_class(),
        gateway("a", listeners=listener()),
        gateway("b", listeners=listener()),
        model_route("to-a", "a", "model-a", "pa"),
        model_route("to-b", "b", "model-b", "pb"),
        pool("pa", picker="epp-a"),
        pool("pb", picker="epp-b"),
        service("epp-a"),
        service("epp-b"),
        sim_deployment("pa", model="model-a"),
        sim_deployment("pb", model="model-b"),
    )
    for gw, model in (("a", "model-a"), ("b", "model-b")):
        listed = http.get(f"{stack.url(f'default/{gw}')}/v1/models").json()["data"]
        assert [m["id"] for m in listed] == [model]


def test_poolgate_up_refuses_a_taken_listener_port_naming_it_and_its_holder(start_stack, tmp_path):
    block = next_block()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:  # as another Envoy would: SO_REUSEPORT
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((f"127.{block}.2.1", 0))
        holder.listen()
        host, port = holder.getsockname()
        gw = gateway(listeners=listener(port))
        objects = [gateway_class(), gw, route(), pool(), service(), sim_deployment("pool")]
        with pytest.raises(RuntimeError) as raised:
            Stack.from_objects(objects, tmp_path, block).start()
    assert f"{host}:{port} is already in use by pid {os.getpid()}" in str(raised.value)


def test_a_state_directory_serves_one_poolgate_up_at_a_time(start_stack, tmp_path):
    objects = [
        gateway_class(),
        gateway(listeners=listener()),
        model_route("route", "gw", "model", "pool"),
        pool(),
        service(),
        sim_deployment("pool", model="model"),
    ]
    first = start_stack(*objects)
    second = Stack([first.stack.files[0]], replace(first.stack.options, address_block=next_block()))
    with pytest.raises(RuntimeError, match=f"in use by another poolgate up \\(pid {os.getpid()}\\)"):
        second.start()
    assert first.stack.supervisor.children["envoy"].running  # the running gateway is untouched
    holder = port_holder(first.stack.model_router.host, first.stack.model_router.port)
    assert first.stack.model_router.host == f"127.{first.block}.1.1" and holder and "model-router" in holder


def test_children_die_with_a_poolgate_up_killed_outright(tmp_path):
    up = subprocess.Popen(
        [*POOLGATE, "up", "-f", "examples/quickstart.yaml", "--state-dir", str(tmp_path), "--address-block", "7"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = up.stdout.readline()
        assert line.startswith("Gateway default/inference-gateway: http://"), line + up.stderr.read()
        objects = yaml.safe_load((tmp_path / "objects.yaml").read_text())["items"]
        addresses = [(o["status"]["podIP"], 8000) for o in objects if o["kind"] == "Pod"]
        host, port = line.strip().rpartition("http://")[2].split(":")
        addresses.append((host, int(port)))
        assert all(port_open(*a) for a in addresses)
    finally:
        up.kill()  # SIGKILL: no chance to stop its children
        up.wait(10)
    wait_until(lambda: not any(port_open(*a) for a in addresses), timeout=10, message="children gone")
