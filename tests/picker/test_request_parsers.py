"""Request parsers as upstream's `requestHandler.parsers` (llm-d router v0.10): first parser claiming the path's
suffix, `passthrough-parser` as the fallback for every other path, a 400 naming the path when nothing takes it; and
the picker forwarding an unread request, scheduled by load, over real gRPC streams."""

from __future__ import annotations

import logging

import orjson
import pytest

from picker.discovery.view import PickerView
from picker.scheduling import load_config
from picker.scheduling.parsers import OpenAiParser, PassthroughParser, RequestParsers, default_parsers, request_path
from tests.support.extproc import header_values, request_body, request_headers, response_body, response_headers
from tests.support.picker import PickerHarness, pool_view
from tests.support.upstream import UPSTREAM_CONFIGS

HEADER = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
POOL = "default/pool"
A, B = "127.0.0.20:8000", "127.0.0.21:8000"
BUSY_A = {A: (6, 0.7), B: (0, 0.1)}  # waiting requests, KV use: A is loaded, B idle
NOT_JSON = b"\x00\x01 a binary payload, not JSON"


def kinds(parsers: RequestParsers, *paths: str) -> list[str | None]:
    resolved = (parsers.resolve(path) for path in paths)
    return [parser.type_name if parser is not None else None for parser in resolved]


def test_the_default_list_reads_openai_paths_and_passes_every_other_path_through():
    parsers = default_parsers()
    assert (
        kinds(
            parsers,
            "/v1/chat/completions",
            "/v1/completions",
            "/openai/v1/embeddings/",  # a trailing slash is ignored, a prefix before the suffix is fine
            "/v1/responses",
            "/v1/chat/completions/render",
            "/v1/projects/p/locations/l/endpoints/openapi/chat/completions",
        )
        == ["openai-parser"] * 6
    )
    assert (
        kinds(parsers, "/tokenize", "/inference/v1/generate", "/v1/messages", "/v1/score", "/")
        == ["passthrough-parser"] * 5
    )


def test_the_path_comes_from_the_path_pseudo_header_then_the_proxy_headers_without_its_query():
    assert request_path({":path": "/v1/completions?stream=1", "x-original-path": "/tokenize"}) == "/v1/completions"
    assert request_path({"x-original-path": "/tokenize?a=b", "x-forwarded-path": "/v1/completions"}) == "/tokenize"
    assert request_path({"x-forwarded-path": "/v1/embeddings"}) == "/v1/embeddings"
    assert request_path({}) == "/v1/completions"  # upstream's assumption for a request naming no path


def test_an_explicit_list_without_a_fallback_refuses_other_paths_and_stops_at_the_first_fallback(caplog):
    assert kinds(RequestParsers.chain([OpenAiParser()]), "/v1/completions", "/tokenize") == ["openai-parser", None]
    with caplog.at_level(logging.WARNING, logger="poolgate.picker"):
        chain = RequestParsers.chain([PassthroughParser("first"), OpenAiParser(), OpenAiParser("again")])
    assert kinds(chain, "/v1/chat/completions", "/tokenize") == ["passthrough-parser"] * 2
    assert [r.parser for r in caplog.records] == ["openai-parser", "again"]  # listed after the fallback
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="poolgate.picker"):
        chain = RequestParsers.chain([OpenAiParser(), OpenAiParser("twice"), PassthroughParser()])
    assert kinds(chain, "/v1/completions", "/tokenize") == ["openai-parser", "passthrough-parser"]
    assert [r.parser for r in caplog.records] == ["twice"]  # a second parser of a type already listed


OPENAI, PASS = "openai-parser", "passthrough-parser"


@pytest.mark.parametrize(
    "sections, chat, tokenize",
    [
        ("", OPENAI, PASS),  # no section: the default list
        ("parser: {pluginRef: openai-parser}\n", OPENAI, None),  # the deprecated section alone
        ("requestHandler: {parsers: [{pluginRef: openai-parser}, {pluginRef: pass}]}\n", OPENAI, PASS),
        # the current section wins over the deprecated one when both are set
        ("parser: {pluginRef: pass}\nrequestHandler: {parsers: [{pluginRef: openai-parser}]}\n", OPENAI, None),
        ("requestHandler: {parsers: [{pluginRef: pass}]}\n", PASS, PASS),  # nothing is read
    ],
)
def test_the_config_sections_choose_the_parsers(sections, chat, tokenize):
    config = load_config(
        HEADER + "plugins: [{type: openai-parser}, {type: passthrough-parser, name: pass}]\n" + sections
    )
    assert kinds(config.parsers, "/v1/chat/completions", "/tokenize") == [chat, tokenize]


def test_upstream_configs_keep_their_parsers():
    integration = load_config((UPSTREAM_CONFIGS / "llm-d-router-v0.10/integration-default.yaml").read_text())
    assert kinds(integration.parsers, "/v1/completions", "/tokenize") == ["openai-parser", None]
    chart = load_config((UPSTREAM_CONFIGS / "llm-d-router-v0.10/chart-default.yaml").read_text())
    assert kinds(chart.parsers, "/v1/completions", "/tokenize") == ["openai-parser", "passthrough-parser"]


def two_pods() -> PickerView:
    return PickerView({POOL: pool_view(POOL, [A, B])})


async def send(picker: PickerHarness, path: str, body: bytes, headers: dict | None = None):
    stream = picker.stream(POOL)
    await stream.send(request_headers({":path": path, **(headers or {})}), request_body(body))
    return stream


@pytest.mark.parametrize("profile", ["llmd-default", "poolgate-default"])
async def test_a_request_no_parser_claims_is_forwarded_unread_to_the_least_loaded_endpoint(profile):
    async with PickerHarness(two_pods(), profile=profile) as picker:
        picker.feed(POOL, BUSY_A)
        for path, body in (("/tokenize", b'{"model": "llama", "prompt": "hi"}'), ("/inference/v1/generate", NOT_JSON)):
            stream = await send(picker, path, body)
            headers_reply, echoed = await stream.read(2)
            assert not headers_reply.HasField("immediate_response"), headers_reply
            mutation = headers_reply.request_headers.response.header_mutation
            assert header_values(mutation)["x-gateway-destination-endpoint"].split(",")[0] == B  # by load
            streamed = echoed.request_body.response.body_mutation.streamed_response
            assert (streamed.body, streamed.end_of_stream) == (body, True)  # forwarded as it came
            await stream.send(response_headers(), response_body(b"{}", end_of_stream=True))
            await stream.read(2)
        labels = {"model_name": "", "target_model_name": "", "fairness_id": "", "priority": "0"}
        assert picker.sample("llm_d_epp_request_total", labels) == 2  # counted, without a model
        assert picker.sample("inference_objective_request_error_total", {**labels, "error_code": "BadRequest"}) == 0


async def test_a_model_rewrite_header_still_names_the_target_of_an_unread_request():
    async with PickerHarness(two_pods()) as picker:
        picker.feed(POOL, BUSY_A)
        stream = await send(picker, "/tokenize", NOT_JSON, {"x-llm-d-model-name-rewrite": "llama-v2"})
        _, echoed = await stream.read(2)
        assert echoed.request_body.response.body_mutation.streamed_response.body == NOT_JSON  # never re-encoded
        labels = {"model_name": "", "target_model_name": "llama-v2", "fairness_id": "", "priority": "0"}
        assert picker.sample("llm_d_epp_request_total", labels) == 1


async def test_openai_paths_are_still_parsed_and_refused_when_malformed():
    async with PickerHarness(two_pods()) as picker:
        picker.feed(POOL, BUSY_A)
        stream = await send(picker, "/v1/chat/completions", NOT_JSON)
        (reply,) = await stream.read(1)
        assert reply.immediate_response.status.code == 400
        assert "not valid JSON" in orjson.loads(reply.immediate_response.body)["error"]["message"]


async def test_the_model_router_names_a_json_body_on_any_path_and_never_refuses_another_paths_body():
    async with PickerHarness(PickerView(), role="model-router") as picker:
        for path, body, expected in (
            ("/v1/chat/completions", b'{"model": "llama"}', {"x-gateway-model-name": "llama"}),
            ("/tokenize", b'{"model": "llama"}', {"x-gateway-model-name": "llama"}),  # routed by its model too
            ("/tokenize", b'{"model": 7}', {}),  # a model that is no name: forwarded, the route decides
            ("/inference/v1/generate", NOT_JSON, {}),  # forwarded as it came, not refused
        ):
            stream = picker.stream(None)
            await stream.send(request_headers({":path": path}), request_body(body))
            headers, echo = await stream.read(2)
            assert header_values(headers.request_headers.response.header_mutation) == expected
            assert echo.request_body.response.body_mutation.streamed_response.body == body


async def test_a_config_without_a_fallback_refuses_other_paths_with_a_400_naming_the_path():
    config = (UPSTREAM_CONFIGS / "llm-d-router-v0.10/integration-default.yaml").read_text()
    async with PickerHarness(two_pods(), config_text=config, profile=None) as picker:
        picker.feed(POOL, BUSY_A)
        stream = await send(picker, "/tokenize?x=1", b'{"model": "llama", "prompt": "hi"}')
        (reply,) = await stream.read(1)
        error = orjson.loads(reply.immediate_response.body)["error"]
        assert (reply.immediate_response.status.code, error["type"]) == (400, "BadRequestError")
        assert "`/tokenize`" in error["message"] and "requestHandler.parsers" in error["message"]
        stream = await send(picker, "/v1/completions", b'{"model": "llama", "prompt": "hi"}')
        (reply, _) = await stream.read(2)
        assert not reply.HasField("immediate_response")  # the parser's own paths are served
