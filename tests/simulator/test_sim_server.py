"""The HTTP server for real on loopback addresses, with aiohttp's client and the official `openai` client."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator import ServerConfig
from simulator.server import SimulatedServer, SimulatedServers

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FAST = ServerConfig(prefill_overhead=0.005, prefill_per_token=0.00001, decode_step=0.002, lora_load=0.01)


@pytest.fixture
async def pods():
    async with SimulatedServers(["127.0.0.10:0", "127.0.0.11:0"], FAST, {"ad1": "/lora/ad1"}) as servers:
        yield servers


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(pods):
    client = openai.AsyncOpenAI(base_url=f"http://{pods[0].address}/v1", api_key="sim", max_retries=0)
    yield client
    await client.close()


async def test_chat_completion_with_the_openai_client(pods, client):
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        max_tokens=7,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello " * 50}],
    )
    completion = raw.parse()
    assert raw.headers["x-poolgate-served-by"] == pods[0].address
    assert raw.headers["x-poolgate-served-model"] == MODEL
    assert completion.model == MODEL and completion.object == "chat.completion"
    assert len(completion.choices[0].message.content.split()) == 7
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage.completion_tokens == 7 and usage.total_tokens == usage.prompt_tokens + 7
    assert usage.prompt_tokens > 75  # 300 bytes of user text alone are 75 tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    again = await client.chat.completions.create(
        model=MODEL,
        max_completion_tokens=3,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello " * 50}],
    )
    assert again.usage.completion_tokens == 3
    assert again.usage.prompt_tokens_details.cached_tokens >= 64  # the same prompt: its full blocks are cached


async def test_completions_with_text_and_token_ids(client):
    completion = await client.completions.create(model=MODEL, prompt="Once upon a time")
    assert completion.usage.completion_tokens == 16  # the default max_tokens
    assert completion.usage.prompt_tokens == 4 and completion.choices[0].text.count(" ") == 16
    by_ids = await client.completions.create(
        model="ad1", prompt=list(range(40)), max_tokens=2, extra_body={"sim_output_tokens": 1}
    )
    assert by_ids.model == "ad1" and by_ids.usage.prompt_tokens == 40
    assert by_ids.usage.completion_tokens == 1 and by_ids.choices[0].finish_reason == "stop"


async def test_streaming_chat_with_usage(client):
    stream = await client.chat.completions.create(
        model=MODEL,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count to five"}],
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 5
    assert content[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


async def test_streaming_completion_wire_format(pods, http):
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 3, "stream": True}
    async with http.post(f"http://{pods[1].address}/v1/completions", json=body) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["x-poolgate-served-by"] == pods[1].address
        assert response.headers["x-poolgate-served-model"] == MODEL
        events = [line for line in (await response.text()).split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    payloads = [orjson.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert [p["choices"][0]["text"] for p in payloads] == ["lorem ", "ipsum ", "dolor "]
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [None, None, "length"]
    assert all("usage" not in p for p in payloads)  # no include_usage: no usage anywhere


async def test_models_list_and_lora_adapter_lifecycle(pods, http, client):
    base = f"http://{pods[0].address}"
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL, "ad1"]
    async with http.post(f"{base}/v1/load_lora_adapter", json={"lora_name": "ad2", "lora_path": "/lora/ad2"}) as r:
        assert r.status == 200 and "ad2" in await r.text()
    async with http.post(f"{base}/v1/load_lora_adapter", json={"lora_name": "ad2", "lora_path": "/lora/ad2"}) as r:
        assert r.status == 400 and "already been loaded" in (await r.json())["error"]["message"]
    async with http.post(f"{base}/v1/load_lora_adapter", json={"lora_name": "ad3"}) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == 400
    listed = {m["id"]: m for m in (await (await http.get(f"{base}/v1/models")).json())["data"]}
    assert listed["ad2"]["parent"] == MODEL and listed["ad2"]["root"] == "/lora/ad2"
    served = await client.completions.create(model="ad2", prompt="x", max_tokens=2)
    assert served.model == "ad2"
    async with http.post(f"{base}/v1/unload_lora_adapter", json={"lora_name": "ad2"}) as r:
        assert r.status == 200
    async with http.post(f"{base}/v1/unload_lora_adapter", json={"lora_name": "ad2"}) as r:
        assert r.status == 404 and (await r.json())["error"]["type"] == "NotFoundError"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.completions.create(model="ad2", prompt="x", max_tokens=2)
    assert caught.value.status_code == 404
    assert "ad2" in str(caught.value.body["message"])


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        ("/v1/chat/completions", b'{"model": "%s"}' % MODEL.encode(), "messages"),
        ("/v1/chat/completions", b'{"model": "%s", "messages": [{"content": "x"}]}' % MODEL.encode(), "messages"),
        ("/v1/completions", b'{"model": "%s", "prompt": "x", "max_tokens": 0}' % MODEL.encode(), "max_tokens"),
        ("/v1/completions", b'{"model": "%s", "prompt": "x", "max_tokens": true}' % MODEL.encode(), "max_tokens"),
        ("/v1/completions", b'{"model": "%s", "prompt": ["a", "b"]}' % MODEL.encode(), "prompt"),
        ("/v1/completions", b'{"model": "%s", "prompt": "x", "n": 2}' % MODEL.encode(), "n"),
        (
            "/v1/completions",
            b'{"model": "%s", "prompt": "x", "stream_options": {"include_usage": true}}' % MODEL.encode(),
            "stream_options",
        ),
        ("/v1/completions", b'{"model": "%s", "prompt": "x", "max_tokens": 200000}' % MODEL.encode(), None),
    ],
)
async def test_bad_requests_get_openai_style_400(pods, http, path, body, param):
    async with http.post(f"http://{pods[0].address}{path}", data=body) as response:
        assert response.status == 400
        assert response.headers["x-poolgate-served-by"] == pods[0].address
        error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "BadRequestError" and error["code"] == 400 and error["param"] == param
    assert error["message"]
    assert pods[0].model.idle


async def test_unknown_model_and_unknown_route_get_404(pods, http, client):
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body == {
        "message": "The model `gpt-nope` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
    async with http.get(f"http://{pods[0].address}/v2/nothing") as response:
        assert response.status == 404 and (await response.json())["error"]["code"] == 404
    async with http.get(f"http://{pods[0].address}/v1/completions") as response:
        assert response.status == 405 and (await response.json())["error"]["code"] == 405


async def test_echo_set_header_and_served_by_on_every_endpoint(pods, http):
    for pod in pods:
        headers = {"X-Echo-Set-Header": f"x-conformance-test-served-endpoint:{pod.address}, x-other: yes"}
        async with http.get(f"http://{pod.address}/health", headers=headers) as response:
            assert response.status == 200
            assert response.headers["x-poolgate-served-by"] == pod.address
            assert response.headers["x-conformance-test-served-endpoint"] == pod.address
            assert response.headers["x-other"] == "yes"
    assert pods[0].address.startswith("127.0.0.10:") and pods[1].address.startswith("127.0.0.11:")


def scrape(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list, name: str) -> float:
    (sample,) = [s for s in samples if s.name == name]
    return sample.value


async def test_metrics_move_under_load(http):
    config = ServerConfig(max_num_seqs=2, prefill_overhead=0.005, prefill_per_token=0.00001, decode_step=0.01)
    async with SimulatedServer("127.0.0.12:0", config) as pod:
        url = f"http://{pod.address}"
        body = {"model": MODEL, "prompt": "z" * 400, "max_tokens": 20}  # 100 prompt tokens each

        async def complete(index: int) -> dict:
            async with http.post(f"{url}/v1/completions", json={**body, "prompt": f"{index}" * 400}) as response:
                return await response.json()

        tasks = [asyncio.create_task(complete(i)) for i in range(5)]
        async with asyncio.timeout(10):
            while pod.model.gauges().running < 2:
                await asyncio.sleep(0.005)
        during = scrape(await (await http.get(f"{url}/metrics")).text())
        assert value(during["vllm:num_requests_running"], "vllm:num_requests_running") == 2
        assert value(during["vllm:num_requests_waiting"], "vllm:num_requests_waiting") == 3
        assert value(during["vllm:kv_cache_usage_perc"], "vllm:kv_cache_usage_perc") == pytest.approx(
            2 * 8 / 28_000
        )  # 120 tokens = 8 blocks per running request
        results = await asyncio.gather(*tasks)
        assert all(r["usage"]["completion_tokens"] == 20 for r in results)
        repeat = await complete(0)  # the same prompt again: 6 full blocks of its 100 tokens are cached
        assert repeat["usage"]["prompt_tokens_details"]["cached_tokens"] == 96
        after = scrape(await (await http.get(f"{url}/metrics")).text())
    assert value(after["vllm:num_requests_running"], "vllm:num_requests_running") == 0
    assert value(after["vllm:kv_cache_usage_perc"], "vllm:kv_cache_usage_perc") == 0
    assert value(after["vllm:prompt_tokens"], "vllm:prompt_tokens_total") == 600
    assert value(after["vllm:generation_tokens"], "vllm:generation_tokens_total") == 120
    assert value(after["vllm:prefix_cache_queries"], "vllm:prefix_cache_queries_total") == 600
    assert value(after["vllm:prefix_cache_hits"], "vllm:prefix_cache_hits_total") == 96
    assert value(after["vllm:time_to_first_token_seconds"], "vllm:time_to_first_token_seconds_count") == 6
    assert value(after["vllm:e2e_request_latency_seconds"], "vllm:e2e_request_latency_seconds_count") == 6
    itl = after["vllm:inter_token_latency_seconds"]
    assert value(itl, "vllm:inter_token_latency_seconds_count") == 6 * 19
    assert value(itl, "vllm:inter_token_latency_seconds_sum") > 6 * 19 * 0.01
    (info,) = after["vllm:cache_config_info"]
    assert info.value == 1 and info.labels["block_size"] == "16" and info.labels["num_gpu_blocks"] == "28000"
    assert after["vllm:num_requests_running"][0].labels["model_name"] == MODEL
    lora = after["vllm:lora_requests_info"]
    assert max(lora, key=lambda s: s.value).labels == {
        "max_lora": "4",
        "running_lora_adapters": "",
        "waiting_lora_adapters": "",
    }


async def test_sglang_metric_names(http):
    async with SimulatedServer("127.0.0.12:0", ServerConfig(engine="sglang")) as pod:
        families = scrape(await (await http.get(f"http://{pod.address}/metrics")).text())
    assert {
        "sglang:num_queue_reqs",
        "sglang:num_running_reqs",
        "sglang:token_usage",
        "sglang:cache_config_info",
    } <= set(families)
    (info,) = families["sglang:cache_config_info"]
    assert info.labels["page_size"] == "16" and info.labels["num_pages"] == "28000"
    assert not any(name.startswith("vllm:") for name in families)


async def test_gauge_samples_match_the_scrape(http):
    async with SimulatedServer("127.0.0.12:0", FAST, {"ad1": "/a"}) as pod:
        families = scrape(await (await http.get(f"http://{pod.address}/metrics")).text())
        direct = pod.model.gauge_samples()
    scraped = [
        (s.name, s.labels, s.value)
        for name in (
            "vllm:num_requests_waiting",
            "vllm:num_requests_running",
            "vllm:kv_cache_usage_perc",
            "vllm:cache_config_info",
            "vllm:lora_requests_info",
        )
        for s in families[name]
    ]
    assert scraped == [(s.name, s.labels, pytest.approx(s.value)) for s in direct]


async def test_no_latency_server_streams_every_token(http):
    async with SimulatedServer("127.0.0.12:0", ServerConfig().without_latency()) as pod:
        body = {"model": MODEL, "prompt": "go", "max_tokens": 300, "stream": True}
        async with http.post(f"http://{pod.address}/v1/completions", json=body) as response:
            events = [e for e in (await response.text()).split("\n\n") if e]
    assert len(events) == 301 and events[-1] == "data: [DONE]"


async def test_client_disconnect_aborts_the_request(pods, http):
    body = {"model": MODEL, "prompt": "long story", "max_tokens": 5000, "stream": True}
    async with http.post(f"http://{pods[0].address}/v1/completions", json=body) as response:
        await response.content.readline()
        assert pods[0].model.gauges().running == 1
    async with asyncio.timeout(5):
        while not pods[0].model.idle:
            await asyncio.sleep(0.01)
    assert pods[0].model.kv.used_blocks() == 0 and pods[0].model.stats.finished_requests == 0


async def test_a_stopped_server_no_longer_listens(http):
    server = SimulatedServer("127.0.0.12:0", FAST)
    await server.start()
    address = server.address
    assert not address.endswith(":0")
    async with http.get(f"http://{address}/health") as response:
        assert response.status == 200
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"http://{address}/health")


async def test_the_decode_side_has_the_named_server_prefill_first_then_decodes(pods, http):
    prefill, decode = pods[0], pods[1]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "tell me " * 100}], "max_tokens": 3}
    headers = {"x-prefiller-host-port": prefill.address}
    async with http.post(f"http://{decode.address}/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["x-poolgate-prefilled-by"] == prefill.address
        usage = (await response.json())["usage"]
    # the decode side computed only the last prompt token; the prefill side ran the prompt for one output token
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1
    assert prefill.model.stats.generation_tokens == 1 and decode.model.stats.generation_tokens == 3
    headers = {"x-prefiller-host-port": "127.0.0.12:9"}  # nobody listens there
    async with http.post(f"http://{decode.address}/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status == 502
        assert "prefill on 127.0.0.12:9 failed" in (await response.json())["error"]["message"]


async def test_render_endpoints_answer_the_prompt_token_ids(pods, http):
    base = f"http://{pods[0].address}"
    system = {"role": "system", "content": "s" * 640}
    bodies = [
        {"model": MODEL, "messages": [system, {"role": "user", "content": "question one"}], "max_tokens": 9},
        {"model": MODEL, "messages": [system, {"role": "user", "content": "another question"}], "stream": True},
    ]
    rendered = []
    for body in bodies:
        async with http.post(base + "/v1/chat/completions/render", json=body) as response:
            assert response.status == 200
            rendered.append(await response.json())
    first, second = rendered
    assert first["model"] == MODEL and first["sampling_params"]["max_tokens"] == 9 and first["stream"] is False
    assert first["request_id"].startswith("chatcmpl-") and second["stream"] is True
    # as many ids as the tokens the server counts for the same request, and the shared system prompt gives the same
    # leading ids (what a router's prefix index keys on)
    async with http.post(base + "/v1/chat/completions", json=bodies[0]) as response:
        prompt_tokens = (await response.json())["usage"]["prompt_tokens"]
    assert len(first["token_ids"]) == prompt_tokens
    assert first["token_ids"][:160] == second["token_ids"][:160] and first["token_ids"] != second["token_ids"]
    async with http.post(base + "/v1/completions/render", json={"model": "ad1", "prompt": "abcdefgh"}) as response:
        assert response.status == 200
        [completion] = await response.json()
    assert completion["token_ids"] == [int.from_bytes(b"abcd", "little"), int.from_bytes(b"efgh", "little")]
    async with http.post(base + "/v1/chat/completions/render", json={**bodies[0], "model": "nope"}) as response:
        assert response.status == 404 and (await response.json())["error"]["param"] == "model"
    async with http.post(base + "/v1/chat/completions/render", json={"model": MODEL}) as response:
        assert response.status == 400 and (await response.json())["error"]["param"] == "messages"


async def test_tokenize_answers_the_ids_the_engine_counts_and_caches(pods, http):
    """vLLM's /tokenize: chat messages rendered as the server renders them, or a text prompt; without a tokenizer,
    one id per 4 bytes, as many as the prompt's token count."""
    from simulator.tokens import byte_token_ids, render_chat

    url = f"http://{pods[0].address}/tokenize"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    async with http.post(url, json={"model": MODEL, "messages": messages}) as response:
        assert response.status == 200
        answer = await response.json()
    expected = list(byte_token_ids(render_chat([("system", "be brief"), ("user", "hello there")])))
    assert answer["tokens"] == expected and answer["count"] == len(expected)
    assert answer["max_model_len"] == FAST.max_model_len
    async with http.post(f"http://{pods[0].address}/v1/chat/completions", json=chat_body(messages)) as response:
        assert (await response.json())["usage"]["prompt_tokens"] == len(expected)
    async with http.post(url, json={"model": MODEL, "prompt": "abcdefgh"}) as response:
        assert (await response.json())["tokens"] == list(byte_token_ids("abcdefgh"))
    async with http.post(url, json={"model": MODEL}) as response:
        assert response.status == 400 and (await response.json())["error"]["param"] == "prompt"


def chat_body(messages: list[dict]) -> dict:
    return {"model": MODEL, "messages": messages, "max_tokens": 1}
