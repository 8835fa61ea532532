"""policy.decide on its own: each reliability decision and the reason for it, without lowering or emitting anything;
and that the lowering carries the decisions into the IR unchanged."""

from __future__ import annotations

import pytest

from poolgate.api.builders import build, gateway, gateway_class, pod, pool, route, service
from poolgate.translate import TranslateOptions, ir, translate
from poolgate.translate.policy import decide


def test_fail_open_pickers_get_buffered_request_bodies_and_streamed_responses():
    # Envoy can fall back without the picker only while it still holds the whole request body, and STREAMED is the
    # one response mode in which a response keeps flowing when the picker dies under it.
    call = decide(TranslateOptions()).picker(failure_open=True)
    assert (call.request_body, call.request_trailers) == ("BUFFERED", False)
    assert call.response_body == "STREAMED"
    assert call.failure_mode_allow is True


@pytest.mark.parametrize("body_mode", ["FULL_DUPLEX_STREAMED", "BUFFERED"])
def test_fail_open_ignores_the_configured_body_mode(body_mode):
    policy = decide(TranslateOptions(body_mode=body_mode))
    assert policy.picker(failure_open=True) == decide(TranslateOptions()).fail_open_picker


def test_fail_close_pickers_stream_both_bodies_full_duplex_and_fail_the_request():
    call = decide(TranslateOptions()).picker(failure_open=False)
    assert (call.request_body, call.request_trailers) == ("FULL_DUPLEX_STREAMED", True)
    assert call.response_body == "FULL_DUPLEX_STREAMED"
    assert call.failure_mode_allow is False


def test_buffered_body_mode_buffers_fail_close_requests_but_still_streams_responses():
    call = decide(TranslateOptions(body_mode="BUFFERED")).picker(failure_open=False)
    assert (call.request_body, call.request_trailers) == ("BUFFERED", False)
    assert call.response_body == "FULL_DUPLEX_STREAMED"


def test_pickers_see_headers_and_response_trailers_in_both_failure_modes():
    policy = decide(TranslateOptions())
    for call in (policy.fail_open_picker, policy.fail_close_picker):
        assert (call.request_headers, call.response_headers, call.response_trailers) == (True, True, True)


def test_the_picker_filter_on_its_own_sends_nothing_and_fails_closed():
    # every route that calls a picker overrides it; a route that does not must never reach a picker
    alone = decide(TranslateOptions(picker_timeout_s=4)).picker_filter
    sent = (alone.request_headers, alone.request_trailers, alone.response_headers, alone.response_trailers)
    assert sent == (False, False, False, False)
    assert (alone.request_body, alone.response_body) == ("NONE", "NONE")
    assert (alone.failure_mode_allow, alone.timeout_s) == (False, 4)


@pytest.mark.parametrize(("body_mode", "duplex"), [("FULL_DUPLEX_STREAMED", True), ("BUFFERED", False)])
def test_the_model_router_reads_request_bodies_only_and_fails_closed(body_mode, duplex):
    router = decide(TranslateOptions(body_mode=body_mode)).model_router
    assert router.request_body == ("FULL_DUPLEX_STREAMED" if duplex else "BUFFERED")
    assert router.request_trailers is duplex
    assert (router.response_headers, router.response_body, router.response_trailers) == (False, "NONE", False)
    assert router.failure_mode_allow is False  # without the model no route can be chosen


def test_every_callout_uses_the_configured_picker_timeout():
    policy = decide(TranslateOptions(picker_timeout_s=2.5))
    callouts = (policy.fail_open_picker, policy.fail_close_picker, policy.picker_filter, policy.model_router)
    assert {c.timeout_s for c in callouts} == {2.5}


def test_retries_walk_the_fallbacks_on_connection_failures_and_resets_only():
    retries = decide(TranslateOptions(retries=5)).retries
    assert retries.retry_on == ("connect-failure", "refused-stream", "reset")
    assert retries.num_retries == 5


def test_circuit_breakers_are_lifted_far_above_envoys_1024_default():
    limits = decide(TranslateOptions()).circuit_limits
    values = (limits.max_connections, limits.max_pending_requests, limits.max_requests, limits.max_retries)
    assert min(values) >= 100_000


def test_client_timeouts_come_from_the_options_and_routes_have_none_by_default():
    policy = decide(TranslateOptions(request_headers_timeout_s=3, request_timeout_s=45, stream_idle_timeout_s=7))
    timeouts = policy.client_timeouts
    assert (timeouts.request_headers_s, timeouts.request_s, timeouts.stream_idle_s) == (3, 45, 7)
    assert policy.route_timeout_s == 0  # LLM responses can take minutes


def test_the_ir_carries_the_decisions_where_they_apply():
    objects = build(
        gateway_class(), gateway(), route(), pool(failure_mode="FailOpen"), service(), pod("p0", "10.0.0.1")
    )
    options = TranslateOptions(retries=4, stream_idle_timeout_s=9)
    policy = decide(options)
    model = translate(objects, options).ir
    [listener] = model.listeners
    assert (listener.gateway_namespace, listener.gateway_name) == ("default", "gw")
    assert listener.client_timeouts == policy.client_timeouts
    assert listener.endpoint_picker == policy.picker_filter
    assert listener.model_router is None
    [forward] = [r.action for vh in listener.virtual_hosts for r in vh.routes]
    assert isinstance(forward, ir.Forward)
    assert forward.retry == policy.retries
    assert forward.timeout_s == policy.route_timeout_s
    [backend] = forward.backends
    assert backend.picker is not None and backend.picker.policy == policy.fail_open_picker
    assert {c.limits for c in model.clusters.values()} == {policy.circuit_limits}


def test_routes_without_a_picker_neither_retry_nor_call_one():
    web = {"group": "", "kind": "Service", "name": "web", "port": 9002}
    objects = build(gateway_class(), gateway(), route(rules=[{"backendRefs": [web]}]), service("web", ip="10.0.0.9"))
    [listener] = translate(objects).ir.listeners
    assert listener.endpoint_picker is None
    [forward] = [r.action for vh in listener.virtual_hosts for r in vh.routes]
    assert isinstance(forward, ir.Forward)
    assert forward.retry is None
    assert forward.backends[0].picker is None
