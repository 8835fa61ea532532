"""The picker as a drop-in for the upstream one (llm-d router v0.10): current `x-llm-d-*` request headers with their
deprecated aliases, upstream's answers when nothing can take a request, and the `llm_d_epp_*` metrics next to the
legacy names — over real gRPC streams to the real server."""

from dataclasses import replace

import orjson
from prometheus_client import generate_latest

from picker.discovery.view import PickerView
from picker.scheduling.framework import Filter
from picker.scheduling.scheduler import Scheduler
from tests.support.extproc import header_values, request_body, request_headers, response_body, response_headers
from tests.support.picker import PickerHarness, pool_view

POOL = "default/pool"
A, B = "127.0.0.20:8000", "127.0.0.21:8000"
BODY = b'{"model": "llama", "prompt": "Say hello"}'
SATURATED = {A: (9, 0.9), B: (9, 0.9)}


def pool(**fields) -> PickerView:
    return PickerView({POOL: pool_view(POOL, [A, B], **fields)})


async def answer(picker, headers: dict | None = None, body: bytes = BODY):
    """The picker's reply to one full-duplex request."""
    stream = picker.stream(POOL)
    await stream.send(request_headers(headers), request_body(body))
    return (await stream.read(1))[0], stream


def refusal(reply) -> tuple[int, dict, dict]:
    assert reply.HasField("immediate_response"), reply
    immediate = reply.immediate_response
    return immediate.status.code, header_values(immediate.headers), orjson.loads(immediate.body)["error"]


class KeepsNone(Filter):
    """A profile filter no endpoint passes (as a P/D filter with no endpoint of its role does)."""

    def filter(self, cycle, endpoints):
        return ()


async def test_current_objective_header_wins_over_the_deprecated_alias_and_either_one_sheds():
    async with PickerHarness(pool(priorities={"batch": -1, "chat": 10})) as picker:
        picker.feed(POOL, SATURATED)
        for headers in (
            {"x-llm-d-inference-objective": "batch"},
            {"x-gateway-inference-objective": "batch"},  # the deprecated alias is still read
        ):
            reply, _ = await answer(picker, headers)
            status, reply_headers, error = refusal(reply)
            assert (status, error["type"]) == (429, "RateLimitError")
            assert reply_headers["x-llm-d-request-dropped-reason"] == "rejected-saturated"
            assert reply_headers["content-type"] == "application/json"
        both = {"x-llm-d-inference-objective": "chat", "x-gateway-inference-objective": "batch"}
        reply, _ = await answer(picker, both)
        assert not reply.HasField("immediate_response")  # chat (priority 10) is never shed


async def test_model_rewrite_header_current_name_first():
    async with PickerHarness(pool()) as picker:
        picker.feed(POOL, {A: (0, 0.1), B: (0, 0.1)})
        for headers, target in (
            ({"x-llm-d-model-name-rewrite": "llama-v2"}, b"llama-v2"),
            ({"x-gateway-model-name-rewrite": "llama-v3"}, b"llama-v3"),
            ({"x-llm-d-model-name-rewrite": "llama-v2", "x-gateway-model-name-rewrite": "llama-v3"}, b"llama-v2"),
        ):
            stream = picker.stream(POOL)
            await stream.send(request_headers(headers), request_body(BODY))
            _, echoed = await stream.read(2)
            body = orjson.loads(echoed.request_body.response.body_mutation.streamed_response.body)
            assert body["model"] == target.decode()


async def test_no_endpoint_left_by_the_profile_filters_is_429_rejected_saturated_an_empty_pool_503():
    async with PickerHarness(pool()) as picker:
        picker.feed(POOL, {A: (0, 0.1), B: (0, 0.1)})
        runtime = picker.pools.pools[POOL]
        old = runtime.scheduler
        profile = replace(old.profile, filters=[*old.profile.filters, KeepsNone("keeps-none")])
        runtime.scheduler = Scheduler(
            old.pool, profile, saturation=old.saturation, fallbacks=old.endpoints_per_pick - 1
        )
        status, headers, error = refusal((await answer(picker))[0])
        assert status == 429 and headers["x-llm-d-request-dropped-reason"] == "rejected-saturated"
        assert "keeps-none" in error["message"]
        labels = {"model_name": "llama", "target_model_name": "llama", "error_code": "ResourceExhausted"}
        assert picker.sample("inference_objective_request_error_total", labels) == 1
        assert picker.sample("llm_d_epp_request_error_total", {**labels, "fairness_id": "", "priority": "0"}) == 1
    async with PickerHarness(PickerView({POOL: pool_view(POOL, [])})) as picker:
        status, headers, _ = refusal((await answer(picker))[0])
        assert status == 503 and "x-llm-d-request-dropped-reason" not in headers


async def test_a_subset_hint_naming_no_endpoint_is_503_not_429():
    async with PickerHarness(pool()) as picker:
        picker.feed(POOL, {A: (0, 0.1), B: (0, 0.1)})
        stream = picker.stream(POOL)
        hint = {"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": ["10.9.9.9:8000"]}}
        await stream.send(request_headers(metadata=hint), request_body(BODY))
        status, headers, _ = refusal((await stream.read(1))[0])
        assert status == 503 and "x-llm-d-request-dropped-reason" not in headers


async def test_llm_d_epp_request_metrics_carry_fairness_id_and_priority_next_to_the_legacy_names():
    async with PickerHarness(pool(priorities={"chat": 10})) as picker:
        picker.feed(POOL, {A: (0, 0.1), B: (0, 0.1)})
        headers = {"x-llm-d-inference-objective": "chat", "x-gateway-inference-fairness-id": "tenant-a"}
        body = b'{"model": "llama", "prompt": "hi", "stream": true}'
        picked, stream = await answer(picker, headers, body)
        assert not picked.HasField("immediate_response"), picked
        echoed = (await stream.read(1))[0]  # full duplex: the request body comes back after the headers' answer
        assert echoed.request_body.response.body_mutation.streamed_response.end_of_stream
        await stream.send(response_headers())
        await stream.read(1)
        usage = b'data: {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
        for chunk, end in ((b"data: {}\n\n", False), (b"data: {}\n\n", False), (usage, True)):
            await stream.send(response_body(chunk, end))
            await stream.read(1)
        current = {"model_name": "llama", "target_model_name": "llama", "fairness_id": "tenant-a", "priority": "10"}
        assert picker.sample("llm_d_epp_request_total", current) == 1
        legacy = {"model_name": "llama", "target_model_name": "llama", "priority": "10"}
        assert picker.sample("inference_objective_request_total", legacy) == 1
        assert picker.sample("llm_d_epp_request_ttft_seconds_count", {**current, "streaming": "true"}) == 1
        assert picker.sample("llm_d_epp_request_streaming_itl_seconds_count", current) == 2
        assert picker.sample("llm_d_epp_request_streaming_tpot_seconds_count", current) == 1
        assert picker.sample("llm_d_epp_request_output_tokens_sum", current) == 4
        assert (
            picker.sample(
                "inference_objective_output_tokens_sum", {"model_name": "llama", "target_model_name": "llama"}
            )
            == 4
        )
        assert picker.sample("llm_d_epp_request_running", current) == 0
        success = {"status": "success", "target_model_name": "llama", "namespace": "default"}
        picked_port = {"port": "8000"}
        assert (
            picker.sample("llm_d_epp_scheduler_attempts_total", {**success, **picked_port, "endpoint_name": "pod-0"})
            + (
                picker.sample(
                    "llm_d_epp_scheduler_attempts_total", {**success, **picked_port, "endpoint_name": "pod-1"}
                )
            )
            == 1
        )
        text = generate_latest(picker.registry).decode()
        for family in (
            "llm_d_epp_average_kv_cache_utilization",
            "llm_d_epp_std_dev_queue_size",
            'llm_d_epp_ready_endpoints{name="pool"} 2.0',
            "llm_d_epp_per_endpoint_queue_size",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket",
            "llm_d_epp_info",
            "# HELP inference_objective_request_total [Deprecated: use llm_d_epp_request_total]",
        ):
            assert family in text, family
