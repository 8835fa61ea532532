"""One HTTP request's ext_proc stream: the endpoint picker's and the model router's side of the protocol.

`Exchange` holds what both sides share (reading the request body, answering it in its body mode, refusing a request);
`ModelRouterExchange` names the model from the body, `PickerExchange` picks the endpoint and follows the response.

Envoy opens one stream per HTTP request and sends, in order, the request headers, the request body (chunks), maybe
request trailers, then the response headers, response body chunks and maybe response trailers. `Exchange.on_message`
takes one message and returns the replies to send (often none, sometimes several). The body modes come from the
`protocol_config` Envoy puts on the first message (absent: full duplex, the upstream default):

- request body FULL_DUPLEX_STREAMED: the headers reply is held until the body has ended; then the headers reply
  (destination header, `envoy.lb` metadata) goes out, followed by the body echoed as `streamed_response` chunks
  (the rewritten body when the model was rewritten, in chunks of at most 62,000 bytes);
- request body BUFFERED (or any other mode): the headers are answered CONTINUE at once, and the reply to the body
  carries the header mutation (and, for a rewritten body, the new body and its content-length);
- no body (end_of_stream on the headers): the pick happens at the headers;
- response bodies: FULL_DUPLEX_STREAMED chunks are sent back as `streamed_response`, STREAMED and BUFFERED chunks
  are answered one by one (replaced only when the model name is mapped back). Each chunk costs constant work: the
  model-name mapper and the usage tail never look further back than a few hundred bytes. With NONE the response
  ends when Envoy closes the stream after the response headers (no usage, TTFT is not measured).

A refused request (bad JSON, unknown model, shed, no endpoint, body too large) gets an ImmediateResponse and ends
the exchange. Whatever way the stream ends, `close` releases the request's in-flight booking exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from picker.pool.objectives import objective_priority, pick_target
from picker.scheduling.framework import Decision, Outcome
from picker.scheduling.parsers import ParserPlugin, default_parsers, request_path
from picker.scheduling.request import PromptInput, SchedulingRequest
from picker.server import protocol as p
from picker.server.errors import RequestError, bad_request, saturated
from picker.server.metrics import RequestLabels
from picker.server.models import is_model_list_request
from picker.server.requests import (
    BASE_MODEL_NAME_HEADER,
    MODEL_NAME_HEADER,
    REQUEST_ID_HEADER,
    STEERING_HEADER,
    address_list,
    body_model,
    current_header_names,
    parse_body,
)
from picker.server.rewrite import ModelNameMapper
from picker.server.usage import UsageTail
from poolgate.api.contract import (
    CONFORMANCE_SELECTED_HEADER,
    CONFORMANCE_SERVED_HEADER,
    LLM_D_FAIRNESS_ID_HEADER,
    LLM_D_MODEL_REWRITE_HEADER,
    LLM_D_OBJECTIVE_HEADER,
)

if TYPE_CHECKING:
    from envoy.service.ext_proc.v3.external_processor_pb2 import HttpBody
    from google.protobuf.struct_pb2 import Struct

    from picker.scheduling.scheduler import Scheduler
    from picker.server.handoff import Handoffs
    from picker.server.metrics import ModelMetrics, PickerMetrics
    from picker.server.pools import PoolRegistry, PoolRuntime

log = logging.getLogger("poolgate.picker")

MAX_STREAMED_CHUNK = 62_000  # bytes per streamed_response chunk (some proxies cap chunks at 64 KiB)
ROUTER_PARSERS = default_parsers()  # the model router reads the bodies a picker without parser config reads
_EMPTY: tuple[p.ProcessingResponse, ...] = ()


@dataclass(frozen=True)
class ExchangeSettings:
    """What every exchange of one server shares: its role and limits."""

    role: str = "endpoint-picker"
    max_body_bytes: int = 10 * 1024 * 1024
    conformance_steering: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """How a request is answered once routed or picked: headers to set, maybe a new body, maybe `envoy.lb` metadata."""

    headers: dict[str, str]
    new_body: bytes | None = None
    metadata: Struct | None = None


class Exchange:
    """One request's stream: reads the request, answers it as `_answer` says (see the module docstring)."""

    __slots__ = (
        "answered",
        "body_size",
        "chunks",
        "failure",
        "finished",
        "headers",
        "metrics",
        "model",
        "pool_key",
        "pools",
        "priority",
        "released",
        "request_mode",
        "response_mode",
        "settings",
        "started",
        "status",
        "target",
    )

    clear_route_cache: ClassVar[bool] = False  # whether Envoy must match the route again after the answer

    def __init__(self, settings: ExchangeSettings, metrics: PickerMetrics, pools: PoolRegistry) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pools = pools
        self.pool_key: str | None = None  # the InferencePool of the stream, for logs
        self.failure: RequestError | None = None  # set when the stream must be refused at its first message
        self.finished = False
        self.released = True  # no in-flight booking to release
        self.answered = False  # the request part has been answered (picked, routed or refused)
        self.request_mode = p.FULL_DUPLEX_STREAMED
        self.response_mode = p.FULL_DUPLEX_STREAMED
        self.started = time.monotonic()
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.body_size = 0
        self.model = ""
        self.target = ""
        self.priority = 0  # the InferenceObjective's priority, once known
        self.status = ""  # the response's :status, once the picker has seen the response headers

    def _answer(self, raw: bytes | None) -> Answer:
        """Route or pick the request whose body is `raw` (None: no body); a RequestError refuses it."""
        raise NotImplementedError

    # -- dispatch ------------------------------------------------------------------------------------------------

    def preparation(self, request: p.ProcessingRequest) -> Callable[[], None] | None:
        """Blocking work to run off the event loop before `on_message(request)`, or None (see PickerExchange)."""
        return None

    def on_message(self, request: p.ProcessingRequest) -> Sequence[p.ProcessingResponse]:
        """The replies to one message from Envoy."""
        kind = request.WhichOneof("request")
        if kind == "request_headers":
            return self._request_headers(request)
        if kind == "request_body":
            return self._request_body(request.request_body)
        if kind == "response_headers":
            return self._response_headers(request)
        if kind == "response_body":
            return self._response_body(request.response_body)
        if kind == "request_trailers":
            return self._request_trailers()
        if kind == "response_trailers":
            return self._response_trailers()
        return _EMPTY

    def internal_error(self, error: BaseException) -> Sequence[p.ProcessingResponse]:
        """The reply after an unexpected error: a 500 while the request is still ours to answer, else nothing."""
        log.error("picker failed on a request", exc_info=error, extra={"pool": self.pool_key})
        if self.status or self.finished:
            self.finished = True
            return _EMPTY
        return self._refuse(RequestError(500, "The endpoint picker failed on this request."))

    def end(self) -> None:
        """Envoy closed its side of the stream."""

    def close(self) -> None:
        """The stream ended (normally or not)."""

    def stream_done(self) -> bool:
        """Whether the stream has nothing more to do (the picker may end it)."""
        return self.finished and self.released

    # -- request path --------------------------------------------------------------------------------------------

    def _request_headers(self, request: p.ProcessingRequest) -> Sequence[p.ProcessingResponse]:
        if request.HasField("protocol_config"):
            self.request_mode = request.protocol_config.request_body_mode
            self.response_mode = request.protocol_config.response_body_mode
        if self.failure is not None:
            return self._refuse(self.failure)
        self.headers = current_header_names(p.header_map(request.request_headers))
        if request.request_headers.end_of_stream:
            return self._decide(None, trailers=False)
        if self.request_mode == p.FULL_DUPLEX_STREAMED:
            return _EMPTY
        return (p.CONTINUE_REQUEST_HEADERS,)

    def _request_body(self, body: HttpBody) -> Sequence[p.ProcessingResponse]:
        chunk = body.body
        if chunk:
            self.body_size += len(chunk)
            if self.body_size > self.settings.max_body_bytes:
                return self._refuse(
                    RequestError(413, f"The request body is larger than {self.settings.max_body_bytes} bytes.")
                )
            self.chunks.append(chunk)
        if body.end_of_stream:
            return self._decide(self._body_bytes(), trailers=False)
        if self.request_mode in (p.FULL_DUPLEX_STREAMED, p.BUFFERED):
            return _EMPTY
        return (p.CONTINUE_REQUEST_BODY,)

    def _request_trailers(self) -> Sequence[p.ProcessingResponse]:
        if self.request_mode == p.FULL_DUPLEX_STREAMED and not self.answered:
            return self._decide(self._body_bytes(), trailers=True)
        return (p.CONTINUE_REQUEST_TRAILERS,)

    def _body_bytes(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _decide(self, raw: bytes | None, trailers: bool) -> Sequence[p.ProcessingResponse]:
        """Route or pick, then answer the request headers/body according to the body mode."""
        try:
            answer = self._answer(raw)
        except RequestError as error:
            return self._refuse(error)
        self.answered = True
        chunks, self.chunks = self.chunks, []  # the body is not needed past this point
        headers, new_body, metadata = answer.headers, answer.new_body, answer.metadata
        clear = self.clear_route_cache
        duplex = self.request_mode == p.FULL_DUPLEX_STREAMED
        remove: tuple[str, ...] = ()
        if new_body is not None:
            if duplex:
                remove = ("content-length",)
            else:
                headers["content-length"] = str(len(new_body))
        mutation = p.header_mutation(headers, remove)
        if raw is None:
            return (p.request_headers_reply(mutation, metadata, clear),)
        if duplex:
            replies = [p.request_headers_reply(mutation, metadata, clear)]
            replies += _echo(chunks if new_body is None else _split(new_body), end_of_stream=not trailers)
            if trailers:
                replies.append(p.CONTINUE_REQUEST_TRAILERS)
            return replies
        return (p.request_body_reply(mutation, metadata, new_body, clear),)

    def _refuse(self, error: RequestError) -> Sequence[p.ProcessingResponse]:
        self.finished = self.answered = True
        self.metrics.error(self._labels(), error.metric_code)
        log.warning(
            "request refused",
            extra={"status": error.status, "error": error.message, "pool": self.pool_key, "model": self.model},
        )
        return (p.immediate_response(error),)

    def _labels(self, streaming: bool = False) -> RequestLabels:
        """The request's metric labels."""
        fairness_id = self.headers.get(LLM_D_FAIRNESS_ID_HEADER, "")
        return RequestLabels(self.model, self.target, fairness_id, self.priority, streaming)

    # -- response path: passed through unchanged -----------------------------------------------------------------

    def _response_headers(self, request: p.ProcessingRequest) -> Sequence[p.ProcessingResponse]:
        return (p.CONTINUE_RESPONSE_HEADERS,)

    def _response_body(self, body: HttpBody) -> Sequence[p.ProcessingResponse]:
        if self.response_mode == p.FULL_DUPLEX_STREAMED:
            return (p.streamed_response_body(body.body, body.end_of_stream),)
        return (p.CONTINUE_RESPONSE_BODY,)

    def _response_trailers(self) -> Sequence[p.ProcessingResponse]:
        return (p.CONTINUE_RESPONSE_TRAILERS,)


class ModelRouterExchange(Exchange):
    """The model router: sets X-Gateway-Model-Name (and the base model of a known LoRA adapter) from the body, and
    has Envoy match the route again with it."""

    __slots__ = ("model_sources",)

    clear_route_cache = True

    def __init__(
        self, settings: ExchangeSettings, metrics: PickerMetrics, pools: PoolRegistry, model_sources: str | None = None
    ) -> None:
        super().__init__(settings, metrics, pools)
        self.model_sources = model_sources  # what `GET /v1/models` lists (gRPC metadata, see picker/server/models.py)

    def lists_models(self, request: p.ProcessingRequest) -> bool:
        """Whether this request is `GET /v1/models` on a listener whose model list the router was given."""
        return (
            self.model_sources is not None
            and request.WhichOneof("request") == "request_headers"
            and is_model_list_request(p.header_map(request.request_headers))
        )

    def _answer(self, raw: bytes | None) -> Answer:
        if raw is None:
            return Answer({})
        try:
            body = parse_body(raw)
            model = None if body.get("model") is None else body_model(body)
        except RequestError:
            parser = ROUTER_PARSERS.resolve(request_path(self.headers))
            if parser is not None and parser.reads_body:
                raise  # an OpenAI path: a malformed body is the client's error
            return Answer({})  # another path (/tokenize, a binary body): forwarded unread, never refused
        if model is None:
            return Answer({})  # no model: leave the route to match without the header
        self.model = self.target = model
        headers = {MODEL_NAME_HEADER: model}
        base = self.pools.adapter_bases.get(model)
        if base:
            headers[BASE_MODEL_NAME_HEADER] = base
        return Answer(headers)


@dataclass(slots=True)
class _Picked:
    """What a picked request keeps until its response ends: the booking and the metrics to update."""

    scheduler: Scheduler
    decision: Decision
    series: ModelMetrics
    usage: UsageTail
    first_token: float | None = None  # seconds from the request headers to the first response body bytes
    last_chunk_at: float = 0.0  # monotonic time of the last response body chunk


class PickerExchange(Exchange):
    """The endpoint picker: resolves the objective and model rewrite, schedules the request on its pool, books it
    in flight until the response ends, and records the response's metrics."""

    __slots__ = ("handoffs", "mapper", "picked", "pool", "response_size", "subset")

    def __init__(
        self,
        settings: ExchangeSettings,
        metrics: PickerMetrics,
        pools: PoolRegistry,
        pool_key: str | None,
        handoffs: Handoffs | None = None,
    ) -> None:
        super().__init__(settings, metrics, pools)
        self.handoffs = handoffs  # set when an observer call follows the response: the pick is handed over to it
        self.pool: PoolRuntime | None = None
        try:
            self.pool = pools.lookup(pool_key)
            self.pool_key = self.pool.key
            if not self.pool.exists:
                raise RequestError(503, f"InferencePool {self.pool.key} does not exist")
        except RequestError as error:
            self.failure = error
        self.subset: tuple[str, ...] | None = None
        self.picked: _Picked | None = None
        self.mapper: ModelNameMapper | None = None
        self.response_size = 0

    def preparation(self, request: p.ProcessingRequest) -> Callable[[], None] | None:
        """When `request` completes a request body of at least the profile's preparation threshold and it has slow
        per-request work now (tokenizing for the precise prefix cache), that work on the parsed body, to run on a
        worker thread; `_answer` then finds its result in the plugins' caches. None otherwise."""
        pool = self.pool
        scheduler = pool.scheduler if pool is not None and self.failure is None and not self.answered else None
        if scheduler is None or not scheduler.prepares:
            return None
        parser = pool.parsers.resolve(request_path(self.headers)) if pool is not None else None
        if parser is None or not parser.reads_body:
            return None  # refused, or forwarded unread: nothing to tokenize
        kind = request.WhichOneof("request")
        if kind == "request_body" and request.request_body.end_of_stream:
            chunks = [*self.chunks, request.request_body.body]
        elif kind == "request_trailers" and self.request_mode == p.FULL_DUPLEX_STREAMED:
            chunks = self.chunks
        else:
            return None
        threshold = scheduler.preparation_threshold()
        if threshold is None or not threshold <= sum(map(len, chunks)) <= self.settings.max_body_bytes:
            return None  # nothing to prepare now; small bodies are tokenized by the cycle itself, too large refused

        def prepare() -> None:
            try:
                body = parse_body(b"".join(chunks))
            except RequestError:
                return  # refused by `_answer`
            scheduler.prepare(body)

        return prepare

    def end(self) -> None:
        """With no response body to watch (mode NONE) the response is over when Envoy closes its side."""
        if not self.released and self.status and self.response_mode == p.NONE:
            self._complete(time.monotonic())

    @property
    def handed_off(self) -> bool:
        """Whether the request was picked and handed over to the call that observes its response."""
        return self.handoffs is not None and self.picked is not None

    def stream_done(self) -> bool:
        return self.handed_off or super().stream_done()

    def close(self) -> None:
        """Release the in-flight booking if the response never completed (unless an observer call has it)."""
        if not self.handed_off:
            self.abandon()

    def observe(self) -> None:
        """An observer call claimed the exchange: it feeds the response in, and nothing it answers is sent."""
        self.response_mode = p.STREAMED  # the cheapest answers to build: constants unless the body is edited

    def abandon(self) -> None:
        """The response will not be followed any further: release the booking if it is still held."""
        if not self.released:
            self._release(time.monotonic())
            if log.isEnabledFor(logging.DEBUG):
                log.debug("request stream ended before its response completed", extra=self._log_fields())

    # -- request path --------------------------------------------------------------------------------------------

    def _request_headers(self, request: p.ProcessingRequest) -> Sequence[p.ProcessingResponse]:
        self.subset = p.subset_hint(request)
        return super()._request_headers(request)

    def _answer(self, raw: bytes | None) -> Answer:
        """Parse once (unless the path's parser forwards the body unread), resolve objective and rewrite, schedule,
        book the request."""
        pool = self.pool
        assert pool is not None  # a stream without its pool was refused at its first message
        headers = self.headers
        body: dict[str, Any] | None = None
        requested, prompt = "", PromptInput()
        if raw is not None:
            path = request_path(headers)
            if self._parser(pool, path).reads_body:
                body = parse_body(raw)
                requested = body_model(body)
                if pool.accepted_models is not None and requested not in pool.accepted_models:
                    message = f"The model `{requested}` does not exist in InferencePool {pool.key}."
                    raise RequestError(404, message, "model")
                prompt = PromptInput.from_body(body, path)
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("request forwarded unread", extra={"pool": pool.key, "path": path})
        self.model = requested
        # an InferenceModelRewrite needs a model name: a request without one keeps the header's target, if any
        target = (
            headers.get(LLM_D_MODEL_REWRITE_HEADER)
            or (requested and self._rewrite_target(pool, requested))
            or requested
        )
        self.target = target
        new_body = None
        if body is not None and target != requested:
            body["model"] = target
            new_body = orjson.dumps(body)
            self.mapper = ModelNameMapper(target, requested)
        self.priority = objective_priority(pool.priorities, headers.get(LLM_D_OBJECTIVE_HEADER))
        request = SchedulingRequest(
            target,
            prompt,
            headers,
            self.priority,
            headers.get(REQUEST_ID_HEADER, ""),
            self.subset,
            address_list(headers.get(STEERING_HEADER)) if self.settings.conformance_steering else None,
            self.pools.adapter_bases.get(target),
            body=body,
        )
        scheduler = pool.scheduler
        assert scheduler is not None  # an existing pool has its scheduler (PoolRuntime.apply builds it first)
        metrics = self.metrics
        started = time.perf_counter()
        decision = scheduler.schedule(request, pool.state.clock())
        elapsed = time.perf_counter() - started
        if decision.outcome is not Outcome.PICKED:
            metrics.scheduled(elapsed, target, None)
            if decision.outcome is Outcome.SHED:
                raise saturated(
                    f"InferencePool {pool.key} is saturated; the request's objective is sheddable. Retry later."
                )
            if decision.outcome is Outcome.FILTERED_OUT:
                raise saturated(f"No endpoint of InferencePool {pool.key} can take the request: {decision.reason}.")
            raise RequestError(503, f"No ready endpoint in InferencePool {pool.key}: {decision.reason}.")
        metrics.scheduled(elapsed, target, _endpoint_labels(pool, decision.endpoints[0]))
        series = metrics.model(self._labels(streaming=body is not None and body.get("stream") is True))
        self.picked = _Picked(scheduler, decision, series, UsageTail())
        self.released = False
        series.started(self.body_size)
        destination = decision.destination
        headers = {p.DESTINATION_HEADER: destination, **decision.request_headers}  # e.g. x-prefiller-host-port
        pick_id = self.handoffs.hold(self) if self.handoffs is not None else None
        return Answer(headers, new_body, p.destination_metadata(destination, pick_id))

    @staticmethod
    def _parser(pool: PoolRuntime, path: str) -> ParserPlugin:
        """The parser of a request path; a RequestError (400) when no parser of the pool's config takes it."""
        parser = pool.parsers.resolve(path)
        if parser is None:
            raise bad_request(
                f"No request parser of InferencePool {pool.key} claims the path `{path}`: the EndpointPickerConfig's "
                "requestHandler.parsers has no fallback parser (passthrough-parser) for other paths."
            )
        return parser

    def _rewrite_target(self, pool: PoolRuntime, requested: str) -> str | None:
        rule = pool.rewrites.rule_for(requested)
        if rule is None:
            return None
        target = pick_target(rule.targets, pool.rng)
        self.metrics.rewrite(pool.rewrite_names.get(id(rule), ""), requested, target)
        return target

    # -- response path -------------------------------------------------------------------------------------------

    def _response_headers(self, request: p.ProcessingRequest) -> Sequence[p.ProcessingResponse]:
        picked = self.picked
        if picked is None:
            return (p.CONTINUE_RESPONSE_HEADERS,)
        decision = picked.decision
        headers = p.header_map(request.response_headers)
        self.status = headers.get(":status", "")
        served = p.served_endpoint(request)
        if served is not None:
            picked.scheduler.on_served(decision, served)
        extra = picked.scheduler.response_headers(decision, served or decision.primary or "")
        if self.settings.conformance_steering:
            # what the GIE conformance picker reports to the test client: its pick, and where Envoy says it served
            extra = {
                **extra,
                CONFORMANCE_SELECTED_HEADER: decision.primary or "",
                CONFORMANCE_SERVED_HEADER: served or "fail: missing envoy lb metadata",
            }
        remove: tuple[str, ...] = ()
        if self.mapper is not None and self.mapper.length_changes and self.response_mode != p.BUFFERED:
            remove = ("content-length",)
        if request.response_headers.end_of_stream:
            self._complete(time.monotonic())
        if not extra and not remove:
            return (p.CONTINUE_RESPONSE_HEADERS,)
        return (p.response_headers_reply(p.header_mutation(extra, remove)),)

    def _response_body(self, body: HttpBody) -> Sequence[p.ProcessingResponse]:
        chunk = body.body
        end = body.end_of_stream
        picked = self.picked
        if picked is not None and chunk:
            now = time.monotonic()
            if self.response_size == 0:
                picked.scheduler.on_first_token(picked.decision, now)
                picked.first_token = now - self.started
                picked.series.first_token(picked.first_token)
            elif picked.series.streaming:
                picked.series.token_gap(now - picked.last_chunk_at)
            picked.last_chunk_at = now
            self.response_size += len(chunk)
            picked.usage.feed(chunk)
        data = self.mapper.feed(chunk, end) if self.mapper is not None else chunk
        if end and picked is not None:
            self._complete(time.monotonic())
        mode = self.response_mode
        if mode == p.FULL_DUPLEX_STREAMED:
            return (p.streamed_response_body(data, end),)
        if self.mapper is None:
            return (p.CONTINUE_RESPONSE_BODY,)
        mutation = None
        if mode == p.BUFFERED and self.mapper.length_changes:
            mutation = p.header_mutation({"content-length": str(len(data))})
        return (p.replaced_response_body(data, mutation),)

    def _response_trailers(self) -> Sequence[p.ProcessingResponse]:
        replies = []
        if self.mapper is not None and self.response_mode == p.FULL_DUPLEX_STREAMED:
            rest = self.mapper.feed(b"", end_of_stream=True)
            if rest:
                replies.append(p.streamed_response_body(rest, False))
        if self.picked is not None:
            self._complete(time.monotonic())
        replies.append(p.CONTINUE_RESPONSE_TRAILERS)
        return replies

    # -- accounting ----------------------------------------------------------------------------------------------

    def _release(self, now: float) -> None:
        picked = self.picked
        assert picked is not None  # released is False only once a request was picked
        self.released = True
        picked.scheduler.on_complete(picked.decision, now)
        picked.series.finished()

    def _complete(self, now: float) -> None:
        """The response ended: release the booking and record the request's metrics (once)."""
        if self.released:
            return
        self._release(now)
        self.finished = True
        picked = self.picked
        assert picked is not None
        duration = now - self.started
        usage = picked.usage.usage()
        picked.series.completed(duration, picked.first_token, self.response_size, usage)
        if self.status and not self.status.startswith("2"):
            self.metrics.error(self._labels(), "ModelServerError")
        if log.isEnabledFor(logging.DEBUG):
            fields = self._log_fields()
            fields.update(
                duration_s=round(duration, 6),
                response_bytes=self.response_size,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
            )
            log.debug("request", extra=fields)

    def _log_fields(self) -> dict[str, Any]:
        decision = self.picked.decision if self.picked is not None else None
        return {
            "pool": self.pool_key,
            "model": self.model,
            "target_model": self.target,
            "destination": decision.destination if decision else None,
            "served": decision.served if decision else None,
            "status": self.status,
            "request_id": self.headers.get(REQUEST_ID_HEADER),
            "fairness_id": self.headers.get(LLM_D_FAIRNESS_ID_HEADER),
        }


def _endpoint_labels(pool: PoolRuntime, key: str) -> tuple[str, str, str]:
    """(pod name, namespace, port) of a pool endpoint, the scheduler-attempt labels upstream uses."""
    endpoint = pool.state.get(key)
    namespace = pool.key.partition("/")[0]
    return (endpoint.pod_name if endpoint is not None else "", namespace, key.rpartition(":")[2])


def _split(body: bytes) -> list[bytes]:
    return [body[i : i + MAX_STREAMED_CHUNK] for i in range(0, len(body), MAX_STREAMED_CHUNK)] or [b""]


def _echo(chunks: list[bytes], end_of_stream: bool) -> list[p.ProcessingResponse]:
    """The body echoed as streamed_response chunks; the last one carries end_of_stream."""
    if not chunks:
        return [p.streamed_request_body(b"", end_of_stream)]
    last = len(chunks) - 1
    return [p.streamed_request_body(chunk, end_of_stream and i == last) for i, chunk in enumerate(chunks)]
