"""Every reliability decision poolgate makes for the Envoy that serves its pools, in one place: what Envoy sends a
pool's picker and the model router and what it does when they fail, how requests retry on a picker's fallbacks, how
far circuit breakers are lifted, and the client and route timeouts. `decide` makes them; the lowering records them
in the IR (the Envoy Gateway target in its Plan), and the emitters only map them to their output."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from poolgate.translate.options import TranslateOptions

BodyMode = Literal["NONE", "BUFFERED", "STREAMED", "FULL_DUPLEX_STREAMED"]

# When a picked endpoint cannot be reached or dies before it answered, retry on the picker's next endpoint. `reset`
# (not only `reset-before-request`) also retries requests that were in flight on a pod that died: an inference
# request has no side effect, and Envoy never retries once response headers went to the client, so a stream that
# has started is never replayed. The cost: a request that itself crashes servers is tried on `retries` more pods.
RETRY_ON = ("connect-failure", "refused-stream", "reset")
# Inference traffic is long-lived and highly concurrent, and every request holds a gRPC stream to its picker for as
# long as it runs: Envoy's default limit of 1,024 requests per cluster would fail the 1,025th (as "overflow"). And
# when a pod dies, every request on it or picked for it retries at once on the picker's fallbacks: Envoy's default of
# 3 parallel retries would fail the rest (a route retries a request at most `retries` times, and only on connection
# failures and resets, so this cannot amplify load beyond that).
CIRCUIT_LIMIT = 100_000
# What a failed picker or model-router call answers when the pool does not let the request through (FailClose).
CALLOUT_FAILURE_STATUS = 503
# A route without a request timeout of its own has none: LLM responses can take minutes.
NO_ROUTE_TIMEOUT_S = 0.0
# Envoy answers 431 to a request whose headers (request line included) exceed this, so no oversized header reaches a
# model server: aiohttp (the simulator) refuses a header line over 8,190 bytes and uvicorn (vLLM) a header block over
# 16 KiB, each with a plain-text 400 that echoes the header back. 8 KiB is also nginx's default per header line.
MAX_REQUEST_HEADERS_KB = 8


@dataclass(frozen=True)
class CalloutPolicy:
    """How Envoy calls an ext_proc service (a pool's picker or the model router): which parts of a request and its
    response it sends, in which body mode, and whether a failed call lets the request go on without it."""

    request_headers: bool
    request_body: BodyMode
    request_trailers: bool
    response_headers: bool
    response_body: BodyMode
    response_trailers: bool
    failure_mode_allow: bool  # a failed call lets the request through (FailOpen) instead of answering 503
    timeout_s: float  # for the gRPC stream and for each message on it
    observe_only: bool = False  # Envoy sends without waiting for answers (no edits; never delays or fails a request)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a request whose picked endpoint failed, each on the next endpoint of the picker's list."""

    retry_on: tuple[str, ...]
    num_retries: int


@dataclass(frozen=True)
class CircuitLimits:
    """Circuit-breaker thresholds of a cluster (Envoy's defaults would fail the 1,025th concurrent request)."""

    max_connections: int
    max_pending_requests: int
    max_requests: int
    max_retries: int


@dataclass(frozen=True)
class ClientTimeouts:
    """How long a client may take to send its request headers and its whole request, and how long a request may
    stay silent either way (0: no limit)."""

    request_headers_s: float
    request_s: float
    stream_idle_s: float


@dataclass(frozen=True)
class RequestLimits:
    """What a listener refuses or drops from a client's request headers before any filter sees them."""

    max_headers_kb: int  # larger request headers get 431
    drop_underscore_headers: bool  # headers named with `_`: servers that read `_` as `-` would see forged headers


@dataclass(frozen=True)
class Policy:
    """The decisions for one translation."""

    fail_open_picker: CalloutPolicy
    fail_close_picker: CalloutPolicy
    picker_filter: CalloutPolicy  # the endpoint-picker filter's own configuration, which each route overrides
    observed_picker: dict[bool, CalloutPolicy]  # failure open? -> the picking call when an observer has the response
    response_observer: CalloutPolicy  # the call that follows a picked request's response, for a poolgate picker
    observer_filter: CalloutPolicy  # the response-observer filter's own configuration, which each route overrides
    model_router: CalloutPolicy
    retries: RetryPolicy
    circuit_limits: CircuitLimits
    client_timeouts: ClientTimeouts
    request_limits: RequestLimits
    route_timeout_s: float  # the request timeout of a route that sets none

    def picker(self, failure_open: bool) -> CalloutPolicy:
        """The call to a pool's picker for the pool's failure mode."""
        return self.fail_open_picker if failure_open else self.fail_close_picker

    def picking(self, failure_open: bool, observed: bool) -> CalloutPolicy:
        """The call that picks a pool's endpoint: with the response too, or (`observed`) the request alone."""
        return self.observed_picker[failure_open] if observed else self.picker(failure_open)


def observes_responses(poolgate_picker: bool, edits_responses: bool, replicas: int) -> bool:
    """Whether a pool's responses go to the observe-only call instead of the picking call. Only a poolgate picker
    knows that call; a picker that edits responses (maps a rewritten model name back in the body, adds response
    headers) must have them on the picking call; so must several replicas, since Envoy balances each call on its
    own and the observing call could reach a replica that does not hold the pick (whose in-flight booking would then
    wait out the unclaimed-pick hold)."""
    return poolgate_picker and not edits_responses and replicas <= 1


def decide(options: TranslateOptions) -> Policy:
    """Every reliability decision for a translation with these options (see docs/architecture.md, Policy).

    Request bodies stream full-duplex unless `options.body_mode` asks for BUFFERED, and are always BUFFERED for
    FailOpen pools: Envoy can fall back only while it still holds the body (a failed full-duplex call answers 503
    even with failure_mode_allow, measured on Envoy 1.40). Response bodies stream full-duplex, except for FailOpen
    pools: STREAMED is the one mode in which a response keeps flowing when the picker dies under it.

    A poolgate picker that does not edit the response (no model name to map back, no response headers to add) is
    called twice per request instead: the picking call covers the request alone, in the pool's failure mode, and
    ends when the request is answered; the response goes to a second, observe-only call (Envoy's observability
    mode: it never waits for an answer, and a failed call changes nothing), which follows the request from its
    headers (so that the picker hears of a client that left before any response) to the end of the response. A
    response that has started therefore finishes whatever happens to the picker, and the picker's answers are off
    the response's path."""
    duplex = options.body_mode == "FULL_DUPLEX_STREAMED"

    def picker(failure_open: bool) -> CalloutPolicy:
        request_duplex = duplex and not failure_open
        return CalloutPolicy(
            request_headers=True,
            request_body="FULL_DUPLEX_STREAMED" if request_duplex else "BUFFERED",
            request_trailers=request_duplex,
            response_headers=True,
            response_body="STREAMED" if failure_open else "FULL_DUPLEX_STREAMED",
            response_trailers=True,
            failure_mode_allow=failure_open,
            timeout_s=options.picker_timeout_s,
        )

    def request_only(failure_open: bool) -> CalloutPolicy:
        return replace(
            picker(failure_open),
            response_headers=False,
            response_body="NONE",
            response_trailers=False,
        )

    # a filter's own configuration sends nothing: each route overrides it with the pool's callout
    filter_defaults = CalloutPolicy(
        request_headers=False,
        request_body="NONE",
        request_trailers=False,
        response_headers=False,
        response_body="NONE",
        response_trailers=False,
        failure_mode_allow=False,
        timeout_s=options.picker_timeout_s,
    )
    return Policy(
        fail_open_picker=picker(failure_open=True),
        fail_close_picker=picker(failure_open=False),
        observed_picker={failure_open: request_only(failure_open) for failure_open in (True, False)},
        response_observer=CalloutPolicy(
            request_headers=True,
            request_body="NONE",
            request_trailers=False,
            response_headers=True,
            response_body="STREAMED",  # the one body mode observability mode supports
            response_trailers=True,
            failure_mode_allow=True,
            timeout_s=options.picker_timeout_s,
            observe_only=True,
        ),
        observer_filter=replace(filter_defaults, failure_mode_allow=True, observe_only=True),
        picker_filter=filter_defaults,
        model_router=CalloutPolicy(
            request_headers=True,
            request_body="FULL_DUPLEX_STREAMED" if duplex else "BUFFERED",
            request_trailers=duplex,
            response_headers=False,
            response_body="NONE",
            response_trailers=False,
            failure_mode_allow=False,  # without the model, no route can be chosen
            timeout_s=options.picker_timeout_s,
        ),
        retries=RetryPolicy(RETRY_ON, options.retries),
        circuit_limits=CircuitLimits(CIRCUIT_LIMIT, CIRCUIT_LIMIT, CIRCUIT_LIMIT, CIRCUIT_LIMIT),
        client_timeouts=ClientTimeouts(
            options.request_headers_timeout_s, options.request_timeout_s, options.stream_idle_timeout_s
        ),
        request_limits=RequestLimits(MAX_REQUEST_HEADERS_KB, drop_underscore_headers=True),
        route_timeout_s=NO_ROUTE_TIMEOUT_S,
    )
