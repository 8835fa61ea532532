"""The ext_proc protocol of the endpoint picker, over real gRPC streams to the real server on 127.0.0.1.

Pool metrics are fed through the pool API (the subject here is the protocol); test_server_scraped.py uses real
simulated pods scraped for real.
"""

from datetime import UTC, datetime

import orjson
import pytest

from picker.discovery.view import PickerView
from picker.pool.objectives import ModelRewrite, RewriteRule, RewriteTarget
from tests.support.aio import until
from tests.support.extproc import (
    BUFFERED,
    FULL_DUPLEX_STREAMED,
    NONE,
    STREAMED,
    header_values,
    lb_metadata,
    request_body,
    request_headers,
    request_trailers,
    response_body,
    response_headers,
    response_trailers,
)
from tests.support.picker import PickerHarness, pool_view

POOL = "default/pool"
A, B, C = "127.0.0.20:8000", "127.0.0.21:8000", "127.0.0.22:8000"
BODY = b'{"model": "llama", "prompt": "Say hello to the picker", "max_tokens": 5}'


def ranked_pool(**fields) -> PickerView:
    return PickerView({POOL: pool_view(POOL, [A, B, C], **fields)})


def feed_ranked(picker: PickerHarness) -> None:
    """Metrics under which llmd-default ranks A, then B, then C."""
    picker.feed(POOL, {A: (0, 0.1), B: (5, 0.5), C: (10, 0.9)})


def destination(reply) -> str:
    """The destination of a headers or body reply; asserts header and metadata agree."""
    common = reply.request_headers.response if reply.HasField("request_headers") else reply.request_body.response
    header = header_values(common.header_mutation)["x-gateway-destination-endpoint"]
    assert lb_metadata(reply) == {"envoy.lb": {"x-gateway-destination-endpoint": header}}
    return header


def error_of(reply) -> tuple[int, dict]:
    assert reply.HasField("immediate_response"), reply
    immediate = reply.immediate_response
    assert header_values(immediate.headers)["content-type"] == "application/json"
    body = orjson.loads(immediate.body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == immediate.status.code
    return immediate.status.code, body["error"]


async def refused(
    picker, body: bytes, mode: int = FULL_DUPLEX_STREAMED, pool: str | None = POOL, headers: dict | None = None
) -> tuple[int, dict]:
    stream = picker.stream(pool)
    await stream.send(request_headers(headers, request_mode=mode))
    if mode != FULL_DUPLEX_STREAMED:
        await stream.read(1)
    await stream.send(request_body(body))
    (reply,) = await stream.read(1)
    assert await stream.finished()
    return error_of(reply)


# -- picking ------------------------------------------------------------------------------------------------------


async def test_full_duplex_holds_the_headers_reply_until_the_body_ends_then_echoes_the_body():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers())
        assert await stream.nothing_pending()
        await stream.send(request_body(BODY[:20], end_of_stream=False))
        assert await stream.nothing_pending()
        await stream.send(request_body(BODY[20:], end_of_stream=True))
        headers, first, last = await stream.read(3)
        assert destination(headers) == f"{A},{B},{C}"
        assert not headers.request_headers.response.clear_route_cache
        echoed = [r.request_body.response.body_mutation.streamed_response for r in (first, last)]
        assert b"".join(e.body for e in echoed) == BODY
        assert [e.end_of_stream for e in echoed] == [False, True]
        assert picker.state(POOL).get(A).inflight == 1
        assert (
            picker.sample(
                "inference_objective_request_total",
                {"model_name": "llama", "target_model_name": "llama", "priority": "0"},
            )
            == 1
        )


async def test_buffered_continues_the_headers_at_once_and_answers_the_body_with_the_pick():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(request_mode=BUFFERED))
        (cont,) = await stream.read(1)
        assert cont.HasField("request_headers") and not cont.request_headers.response.HasField("header_mutation")
        await stream.send(request_body(BODY))
        (reply,) = await stream.read(1)
        assert destination(reply) == f"{A},{B},{C}"
        assert not reply.request_body.response.HasField("body_mutation")


async def test_a_request_without_body_is_picked_at_the_headers():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers({":method": "GET", ":path": "/v1/models"}, end_of_stream=True))
        (reply,) = await stream.read(1)
        assert destination(reply) == f"{A},{B},{C}"


@pytest.mark.parametrize("fallbacks, expected", [(0, A), (1, f"{A},{B}"), (5, f"{A},{B},{C}")])
async def test_the_destination_lists_the_primary_and_the_configured_fallbacks(fallbacks, expected):
    async with PickerHarness(ranked_pool(), fallbacks=fallbacks) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY))
        assert destination((await stream.read(2))[0]) == expected


async def test_without_pool_metadata_the_only_pool_is_used():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(None)
        await stream.send(request_headers(), request_body(BODY))
        assert destination((await stream.read(2))[0]) == f"{A},{B},{C}"


async def test_each_call_is_picked_in_the_pool_its_metadata_names():
    view = PickerView({"ns1/one": pool_view("ns1/one", [A]), "ns2/two": pool_view("ns2/two", [B])})
    async with PickerHarness(view) as picker:
        for pool, expected in (("ns1/one", A), ("ns2/two", B)):
            stream = picker.stream(pool)
            await stream.send(request_headers(), request_body(BODY))
            assert destination((await stream.read(2))[0]) == expected
        status, error = await refused(picker, BODY, pool=None)
        assert status == 503 and "x-poolgate-pool" in error["message"]
        status, error = await refused(picker, BODY, pool="ns3/three")
        assert status == 503 and "ns3/three" in error["message"]


async def test_subset_hint_restricts_the_pick_and_an_empty_or_foreign_subset_is_503():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)

        async def pick(subset):
            stream = picker.stream(POOL)
            hint = {"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": subset}}
            await stream.send(request_headers(metadata=hint), request_body(BODY))
            return (await stream.read(1))[0]

        assert destination(await pick([C, "127.0.0.21"])) == f"{B},{C}"
        for subset in ([], ["10.9.9.9:8000"]):
            status, error = error_of(await pick(subset))
            assert status == 503 and error["type"] == "ServiceUnavailableError"


@pytest.mark.parametrize("enabled", [False, True])
async def test_conformance_steering_header_only_with_the_flag(enabled):
    async with PickerHarness(ranked_pool(), conformance_steering=enabled) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers({"test-epp-endpoint-selection": C}), request_body(BODY))
        assert destination((await stream.read(2))[0]) == (C if enabled else f"{A},{B},{C}")


async def test_the_served_endpoint_takes_over_the_in_flight_booking_and_the_end_releases_it():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        state = picker.state(POOL)
        for tell in (
            {"metadata": {"envoy.lb": {"x-gateway-destination-endpoint-served": B}}},
            {"attributes": {"upstream.address": B}},
        ):
            stream = picker.stream(POOL)
            await stream.send(request_headers(), request_body(BODY))
            await stream.read(2)
            assert (state.get(A).inflight, state.get(B).inflight) == (1, 0)
            await stream.send(response_headers(**tell))
            await stream.read(1)
            assert (state.get(A).inflight, state.get(B).inflight) == (0, 1)
            await stream.send(response_body(b'{"model":"llama"}', end_of_stream=True))
            await stream.read(1)
            assert await stream.finished()
            assert (state.get(A).inflight, state.get(B).inflight) == (0, 0)


# -- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [FULL_DUPLEX_STREAMED, BUFFERED])
@pytest.mark.parametrize(
    "body, param",
    [
        (b'{"model": "llama", "prompt": ', None),  # truncated JSON
        (b"[1, 2, 3]", None),  # not an object
        (b'{"prompt": "hi"}', "model"),  # no model
        (b'{"model": "", "prompt": "hi"}', "model"),  # empty model
        (b'{"model": 7, "prompt": "hi"}', "model"),  # not a string
        (b'{"model": "a\\nb"}', "model"),  # control character
        (b"[" * 5000 + b"]" * 5000, None),  # deeply nested
        (b'{"model": "llama", "prompt": "\xff\xfe"}', None),  # not UTF-8
        (b'{"model": "\\ud800"}', None),  # lone surrogate
        (b"", None),  # empty body
    ],
)
async def test_bad_bodies_get_400_with_an_openai_error(mode, body, param):
    async with PickerHarness(ranked_pool()) as picker:
        status, error = await refused(picker, body, mode)
        assert (status, error["type"], error["param"]) == (400, "BadRequestError", param)
        assert (
            picker.sample(
                "inference_objective_request_error_total",
                {"model_name": "", "target_model_name": "", "error_code": "BadRequest"},
            )
            == 1
        )
        assert all(e.inflight == 0 for e in picker.state(POOL).endpoints())


async def test_a_body_over_the_limit_gets_413_at_the_chunk_that_crosses_it():
    async with PickerHarness(ranked_pool(), max_body_bytes=100) as picker:
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(b"x" * 60, end_of_stream=False))
        assert await stream.nothing_pending()
        await stream.send(request_body(b"x" * 60, end_of_stream=False))
        status, error = error_of((await stream.read(1))[0])
        assert status == 413 and "100 bytes" in error["message"]
        assert await stream.finished()


async def test_unknown_model_of_a_pool_with_a_model_list_is_404():
    rewrite = ModelRewrite(
        "canary", datetime(2025, 1, 1, tzinfo=UTC), (RewriteRule(("food-review",), (RewriteTarget("food-review-v2"),)),)
    )
    async with PickerHarness(ranked_pool(models=frozenset({"llama"}), rewrites=(rewrite,))) as picker:
        feed_ranked(picker)
        status, error = await refused(picker, b'{"model": "mistral"}')
        assert (status, error["type"], error["param"]) == (404, "NotFoundError", "model")
        assert "mistral" in error["message"]
        for model in (b"llama", b"food-review", b"food-review-v2"):  # the list and the models rewrites name
            stream = picker.stream(POOL)
            await stream.send(request_headers(), request_body(b'{"model": "%s"}' % model))
            assert destination((await stream.read(1))[0]) == f"{A},{B},{C}"


async def test_a_pool_without_ready_endpoints_is_503():
    async with PickerHarness(PickerView({POOL: pool_view(POOL, [])})) as picker:
        status, error = await refused(picker, BODY)
        assert status == 503 and "no ready endpoint" in error["message"]
        failure = {"status": "failure", "target_model_name": "llama", "namespace": "", "port": ""}
        assert picker.sample("inference_extension_scheduler_attempts_total", {**failure, "pod_name": ""}) == 1
        assert picker.sample("llm_d_epp_scheduler_attempts_total", {**failure, "endpoint_name": ""}) == 1


async def test_sheddable_requests_get_429_when_the_pool_is_saturated_and_others_are_picked():
    async with PickerHarness(ranked_pool(priorities={"batch": -1, "chat": 10})) as picker:
        picker.feed(POOL, {A: (9, 0.9), B: (9, 0.9), C: (9, 0.9)})
        status, error = await refused(picker, BODY, headers={"x-gateway-inference-objective": "batch"})
        assert (status, error["type"]) == (429, "RateLimitError")
        assert (
            picker.sample(
                "inference_objective_request_error_total",
                {"model_name": "llama", "target_model_name": "llama", "error_code": "ResourceExhausted"},
            )
            == 1
        )
        for objective in ("chat", "unknown-objective", None):  # unknown objective: priority 0, never shed
            headers = {"x-gateway-inference-objective": objective} if objective else None
            stream = picker.stream(POOL)
            await stream.send(request_headers(headers), request_body(BODY))
            assert destination((await stream.read(1))[0])
        picker.feed(POOL, {A: (0, 0.1), B: (0, 0.1), C: (0, 0.1)})  # no longer saturated
        stream = picker.stream(POOL)
        await stream.send(request_headers({"x-gateway-inference-objective": "batch"}), request_body(BODY))
        assert destination((await stream.read(1))[0])


async def test_a_router_callout_to_a_picker_without_the_router_role_is_500():
    async with PickerHarness(ranked_pool()) as picker:
        stream = picker.stream(POOL, callout="model-router")
        await stream.send(request_headers())
        status, error = error_of((await stream.read(1))[0])
        assert status == 500 and "--role" in error["message"]


# -- rewrites -----------------------------------------------------------------------------------------------------


def canary_pool() -> PickerView:
    rewrite = ModelRewrite(
        "canary",
        datetime(2025, 1, 1, tzinfo=UTC),
        (RewriteRule(("food-review",), (RewriteTarget("food-review-v2-long-name"),)),),
    )
    return ranked_pool(rewrites=(rewrite,))


SSE = (
    b'data: {"id":"1","model":"food-review-v2-long-name","choices":[{"text":"a"}]}\n\n'
    b'data: {"id":"1","model": "food-review-v2-long-name","choices":[{"text":"b"}]}\n\n'
    b'data: {"id":"1","model":"food-review-v2-long-name","choices":[],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}\n\n'
    b"data: [DONE]\n\n"
)


async def test_rewritten_model_in_the_full_duplex_request_and_mapped_back_across_chunk_boundaries():
    async with PickerHarness(canary_pool()) as picker:
        feed_ranked(picker)
        for cut in range(1, 140, 3):  # split the response at many places, inside the model name too
            stream = picker.stream(POOL)
            await stream.send(request_headers(), request_body(b'{"model": "food-review", "prompt": "x"}'))
            headers, body = await stream.read(2)
            mutation = headers.request_headers.response.header_mutation
            assert "content-length" in mutation.remove_headers
            sent = orjson.loads(body.request_body.response.body_mutation.streamed_response.body)
            assert sent == {"model": "food-review-v2-long-name", "prompt": "x"}
            await stream.send(response_headers({"content-type": "text/event-stream", "content-length": "999"}))
            (reply,) = await stream.read(1)
            assert "content-length" in reply.response_headers.response.header_mutation.remove_headers
            pieces = [SSE[:cut], SSE[cut : cut + 50], SSE[cut + 50 :]]
            out = b""
            for i, piece in enumerate(pieces):
                await stream.send(response_body(piece, end_of_stream=i == 2))
                out += (await stream.read(1))[0].response_body.response.body_mutation.streamed_response.body
            assert out == SSE.replace(b"food-review-v2-long-name", b"food-review")
        assert picker.sample(
            "inference_extension_model_rewrite_decisions_total",
            {"model_rewrite_name": "canary", "model_name": "food-review", "target_model": "food-review-v2-long-name"},
        ) == len(range(1, 140, 3))


async def test_rewritten_model_in_a_buffered_body_sets_the_new_content_length():
    async with PickerHarness(canary_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(request_mode=BUFFERED, response_mode=BUFFERED))
        await stream.read(1)
        await stream.send(request_body(b'{"model": "food-review", "prompt": "x"}'))
        (reply,) = await stream.read(1)
        common = reply.request_body.response
        assert orjson.loads(common.body_mutation.body)["model"] == "food-review-v2-long-name"
        assert header_values(common.header_mutation)["content-length"] == str(len(common.body_mutation.body))
        await stream.send(response_headers())
        await stream.read(1)
        answer = b'{"model":"food-review-v2-long-name","choices":[]}'
        await stream.send(response_body(answer, end_of_stream=True))
        (reply,) = await stream.read(1)
        mapped = reply.response_body.response
        assert mapped.body_mutation.body == b'{"model":"food-review","choices":[]}'
        assert header_values(mapped.header_mutation)["content-length"] == str(len(mapped.body_mutation.body))


async def test_the_rewrite_header_overrides_the_target_and_large_bodies_are_echoed_in_bounded_chunks():
    async with PickerHarness(canary_pool()) as picker:
        feed_ranked(picker)
        prompt = "y" * 150_000
        stream = picker.stream(POOL)
        await stream.send(
            request_headers({"x-gateway-model-name-rewrite": "forced"}),
            request_body(orjson.dumps({"model": "food-review", "prompt": prompt})),
        )
        replies = await stream.read(1 + 3)
        chunks = [r.request_body.response.body_mutation.streamed_response for r in replies[1:]]
        assert all(len(c.body) <= 62_000 for c in chunks) and chunks[-1].end_of_stream
        assert orjson.loads(b"".join(c.body for c in chunks)) == {"model": "forced", "prompt": prompt}


# -- response path: usage, TTFT, modes, trailers ------------------------------------------------------------------


async def test_usage_from_the_final_sse_event_and_ttft_are_recorded():
    async with PickerHarness(canary_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(b'{"model": "food-review", "prompt": "x"}'))
        await stream.read(2)
        await stream.send(response_headers({"content-type": "text/event-stream"}))
        await stream.read(1)
        for i in range(0, len(SSE), 40):
            await stream.send(response_body(SSE[i : i + 40], end_of_stream=i + 40 >= len(SSE)))
            await stream.read(1)
        labels = {"model_name": "food-review", "target_model_name": "food-review-v2-long-name"}
        assert picker.sample("inference_objective_input_tokens_sum", labels) == 7
        assert picker.sample("inference_objective_output_tokens_sum", labels) == 2
        assert picker.sample("inference_objective_prompt_cached_tokens_sum", labels) == 4
        assert picker.sample("inference_objective_request_ttft_seconds_count", labels) == 1
        assert picker.sample("inference_objective_request_duration_seconds_count", labels) == 1
        assert picker.sample("inference_objective_response_sizes_sum", labels) == len(SSE)
        assert picker.sample("inference_objective_running_requests", {"model_name": "food-review"}) == 0


async def test_usage_from_a_json_body_with_a_long_answer_before_it():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY))
        await stream.read(2)
        answer = orjson.dumps(
            {
                "model": "llama",
                "choices": [{"text": '"usage": {"prompt_tokens": 99}' * 5000}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 13},
            }
        )
        await stream.send(response_headers())
        await stream.read(1)
        for i in range(0, len(answer), 30_000):
            await stream.send(response_body(answer[i : i + 30_000], end_of_stream=i + 30_000 >= len(answer)))
            await stream.read(1)
        labels = {"model_name": "llama", "target_model_name": "llama"}
        assert picker.sample("inference_objective_input_tokens_sum", labels) == 11
        assert picker.sample("inference_objective_output_tokens_sum", labels) == 13


@pytest.mark.parametrize("mode", [STREAMED, NONE])
async def test_streamed_and_no_response_body_modes(mode):
    async with PickerHarness(canary_pool()) as picker:
        feed_ranked(picker)
        state = picker.state(POOL)
        stream = picker.stream(POOL)
        await stream.send(request_headers(response_mode=mode), request_body(b'{"model": "food-review", "prompt": "x"}'))
        await stream.read(2)
        if mode == NONE:  # no body messages: the response is over when Envoy closes the stream
            await stream.send(response_headers())
            await stream.read(1)
            assert sum(e.inflight for e in state.endpoints()) == 1
            await stream.close()
            labels = {"model_name": "food-review", "target_model_name": "food-review-v2-long-name"}
            assert picker.sample("inference_objective_request_duration_seconds_count", labels) == 1
        else:
            await stream.send(response_headers())
            await stream.read(1)
            await stream.send(response_body(b'{"model":"food-review-v2-'))
            first = (await stream.read(1))[0].response_body.response
            await stream.send(response_body(b'long-name"}', end_of_stream=True))
            second = (await stream.read(1))[0].response_body.response
            assert first.body_mutation.body + second.body_mutation.body == b'{"model":"food-review"}'
        assert await stream.finished()
        assert all(e.inflight == 0 for e in state.endpoints())


async def test_request_and_response_trailers_end_the_bodies():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY, end_of_stream=False), request_trailers())
        headers, body, trailers = await stream.read(3)
        assert destination(headers) == f"{A},{B},{C}"
        assert body.request_body.response.body_mutation.streamed_response.body == BODY
        assert not body.request_body.response.body_mutation.streamed_response.end_of_stream
        assert trailers.HasField("request_trailers")
        await stream.send(response_headers(), response_body(b"{}"), response_trailers())
        replies = await stream.read(3)
        assert replies[-1].HasField("response_trailers")
        assert picker.state(POOL).get(A).inflight == 0


async def test_a_stream_reset_releases_the_booking_exactly_once():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        state = picker.state(POOL)
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY))
        await stream.read(2)
        await stream.send(response_headers(), response_body(b"data: partial", end_of_stream=False))
        await stream.read(2)
        assert state.get(A).inflight == 1
        stream.cancel()  # the client went away: Envoy resets the stream
        for _ in range(100):
            if state.get(A).inflight == 0:
                break
            await stream.nothing_pending(0.01)
        assert state.get(A).inflight == 0
        assert picker.sample("inference_objective_running_requests", {"model_name": "llama"}) == 0
        # a second request books again, and completing it then resetting releases nothing more
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY))
        await stream.read(2)
        await stream.send(response_headers(), response_body(b"{}", end_of_stream=True))
        await stream.read(2)
        stream.cancel()
        await stream.nothing_pending(0.05)
        assert [e.inflight for e in state.endpoints()] == [0, 0, 0]
        assert picker.sample("inference_objective_running_requests", {"model_name": "llama"}) == 0


# -- model router -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role, callout", [("model-router", None), ("both", "model-router")])
async def test_model_router_sets_the_model_header_and_clears_the_route_cache(role, callout):
    view = PickerView(adapter_bases={"sql-lora": "llama"})
    async with PickerHarness(view, role=role) as picker:
        for body, expected in (
            (b'{"model": "llama"}', {"x-gateway-model-name": "llama"}),
            (b'{"model": "sql-lora"}', {"x-gateway-model-name": "sql-lora", "x-gateway-base-model-name": "llama"}),
            (b'{"prompt": "no model"}', {}),
        ):
            stream = picker.stream(None, callout=callout)
            await stream.send(request_headers(), request_body(body))
            headers, echo = await stream.read(2)
            common = headers.request_headers.response
            assert header_values(common.header_mutation) == expected
            assert common.clear_route_cache
            assert not headers.HasField("dynamic_metadata")
            assert echo.request_body.response.body_mutation.streamed_response.body == body


async def test_model_router_in_buffered_mode_and_both_roles_in_one_process():
    async with PickerHarness(ranked_pool(), role="both") as picker:
        feed_ranked(picker)
        stream = picker.stream(None, callout="model-router")
        await stream.send(request_headers(request_mode=BUFFERED))
        await stream.read(1)
        await stream.send(request_body(b'{"model": "llama"}'))
        (reply,) = await stream.read(1)
        assert header_values(reply.request_body.response.header_mutation) == {"x-gateway-model-name": "llama"}
        assert reply.request_body.response.clear_route_cache
        stream = picker.stream(POOL)  # the endpoint-picking call of the same request
        await stream.send(request_headers(), request_body(BODY))
        assert destination((await stream.read(2))[0]) == f"{A},{B},{C}"


async def test_model_router_rejects_invalid_json_in_both_modes():
    async with PickerHarness(PickerView(), role="model-router") as picker:
        for mode in (FULL_DUPLEX_STREAMED, BUFFERED):
            status, error = await refused(picker, b'{"model": ', mode, pool=None)
            assert (status, error["type"]) == (400, "BadRequestError")


async def test_an_unexpected_error_answers_500_and_keeps_serving(monkeypatch):
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        scheduler = picker.pools.pools[POOL].scheduler

        def broken(request, now):
            raise RuntimeError("boom")

        monkeypatch.setattr(scheduler, "schedule", broken)
        status, error = await refused(picker, BODY)
        assert (status, error["type"]) == (500, "InternalServerError")
        monkeypatch.undo()
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY))
        assert destination((await stream.read(2))[0]) == f"{A},{B},{C}"


async def test_a_stream_closed_before_the_response_releases_the_booking():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        stream = picker.stream(POOL)
        await stream.send(request_headers(), request_body(BODY))
        await stream.read(2)
        await stream.close()  # Envoy half-closes without a response (e.g. the upstream failed to connect)
        assert picker.state(POOL).get(A).inflight == 0


# -- the response observed on a call of its own -------------------------------------------------------------------

RUNNING = ("inference_objective_running_requests", {"model_name": "llama"})


async def picked_for_an_observer(picker: PickerHarness) -> str:
    """A pick made on a `pick-request` call: the call ends with the pick, which stays booked; its pick id."""
    stream = picker.stream(POOL, callout="pick-request")
    await stream.send(request_headers(), request_body(BODY))
    headers_reply, echo = await stream.read(2)
    assert echo.request_body.response.body_mutation.streamed_response.end_of_stream
    lb = lb_metadata(headers_reply)["envoy.lb"]
    assert lb["x-gateway-destination-endpoint"].split(",")[0] == A
    assert await stream.finished()  # the picking call is over once the request is answered
    assert picker.sample(*RUNNING) == 1  # ... and the booking outlives it
    return lb["x-poolgate-pick"]


def observed(pick_id: str | None) -> dict:
    return {"envoy.lb": {"x-poolgate-pick": pick_id}} if pick_id else {}


async def test_an_observer_call_claims_the_pick_follows_the_response_and_answers_nothing():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        pick_id = await picked_for_an_observer(picker)
        observer = picker.stream(POOL, callout="observe-response")
        await observer.send(request_headers(request_mode=None, metadata=observed(pick_id)))
        served = {"envoy.lb": {"x-gateway-destination-endpoint-served": B, "x-poolgate-pick": pick_id}}
        await observer.send(response_headers({"content-type": "text/event-stream"}, metadata=served))
        state = picker.state(POOL)
        await until(lambda: (state.get(A).inflight, state.get(B).inflight) == (0, 1))  # B took A's booking
        for i in range(0, len(SSE), 40):
            await observer.send(response_body(SSE[i : i + 40], end_of_stream=i + 40 >= len(SSE)))
        assert await observer.finished()  # the picker ends the call at the response's end
        assert observer.replies.empty()  # Envoy would ignore answers: none are sent
        labels = {"model_name": "llama", "target_model_name": "llama"}
        assert picker.sample("inference_objective_input_tokens_sum", labels) == 7
        assert picker.sample("inference_objective_request_ttft_seconds_count", labels) == 1
        assert picker.sample(*RUNNING) == 0
        assert (state.get(A).inflight, state.get(B).inflight) == (0, 0)


async def test_an_observer_call_that_ends_early_releases_the_pick_and_strangers_are_ignored():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        pick_id = await picked_for_an_observer(picker)
        for stranger in (None, "another-process-7", pick_id + "0"):
            observer = picker.stream(POOL, callout="observe-response")
            await observer.send(request_headers(request_mode=None, metadata=observed(stranger)))
            assert await observer.finished()
        assert picker.sample(*RUNNING) == 1  # nobody else could claim the pick
        observer = picker.stream(POOL, callout="observe-response")
        await observer.send(request_headers(request_mode=None, metadata=observed(pick_id)))
        await until(lambda: len(picker.server.processor.handoffs) == 0)  # claimed
        observer.cancel()  # the client left before any response: Envoy resets the call
        await until(lambda: picker.sample(*RUNNING) == 0)


async def test_a_pick_no_observer_claims_is_released_after_the_hold():
    async with PickerHarness(ranked_pool()) as picker:
        feed_ranked(picker)
        picker.server.processor.handoffs.hold_s = 0.0
        await picked_for_an_observer(picker)
        await picked_for_an_observer(picker)  # each hold expires the older ones
        assert picker.sample(*RUNNING) == 1
        assert len(picker.server.processor.handoffs) == 1
