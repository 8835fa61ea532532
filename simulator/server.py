"""The HTTP face of simulated servers: an OpenAI/vLLM-compatible aiohttp app per server, on the wall clock.

Start servers inside a running asyncio loop:

    async with SimulatedServers(["127.0.0.10:8000", "127.0.0.11:8000"], ServerConfig(), {"ad1": "/lora/ad1"}) as pods:
        print(pods.addresses)          # ["127.0.0.10:8000", "127.0.0.11:8000"]
        pods[0].model.gauges()         # the engine behind the first one

or one at a time with `server = SimulatedServer("127.0.0.10:0"); await server.start(); ...; await server.stop()`
(port 0 picks a free port; `server.address` tells which).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from prometheus_client import CONTENT_TYPE_LATEST

from poolgate.api.contract import (
    DESTINATION_HEADER,
    PICKED_ECHO_HEADER,
    PREFILLED_BY_HEADER,
    PREFILLER_HOST_PORT_HEADER,
    SERVED_BY_HEADER,
    SERVED_MODEL_HEADER,
)
from simulator.clock import WallClock
from simulator.config import METRICS_FAULT_PATH, METRICS_FAULTS
from simulator.metrics import MetricsPage
from simulator.model import InvalidRequestError, ServerConfig, ServerModel, UnknownModelError
from simulator.protocol import (
    ApiError,
    ChunkWriter,
    completion_body,
    error_body,
    parse_generation,
    parse_tokenize,
    response_id,
)

log = logging.getLogger("poolgate.simulator")

ECHO_SET_HEADER = "X-Echo-Set-Header"
_MAX_BODY = 64 * 1024 * 1024
_SHUTDOWN_GRACE = 0.5  # seconds in-flight requests get to finish when a server stops
_PREFILL_TIMEOUT = 60.0  # seconds the decode side waits for a remote prefill (P/D)
# What /metrics answers in `garbage` mode, in turn: a scraper must survive each without trusting any of it.
GARBAGE_METRICS = (
    b"\x00\xff\xfe binary \x80\x81 not text at all",
    b'vllm:num_requests_waiting{model_name="m"} NaN\nvllm:num_requests_running -3\n',
    b'vllm:num_requests_waiting{model_name="m" 1\nvllm:kv_cache_usage_perc{{{ 0.5\n',
    b"<html><body>502 Bad Gateway</body></html>",
    b"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting one\n",
    b"vllm:num_requests_waiting 1e999\nvllm:num_requests_running 1e999\nvllm:kv_cache_usage_perc 1e999\n",
)


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `ip:port` (or `[ipv6]:port`) into host and port; ValueError if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected ip:port, not {listen!r}")
    return host.strip("[]"), int(port)


class MetricsFault:
    """Fault injection on /metrics, for testing scrapers: `hang` never answers (until the client gives up),
    `garbage` answers 200 with unparsable or absurd text (GARBAGE_METRICS in turn). Counts scrapes and how many
    were in flight at once."""

    def __init__(self, mode: str = "none") -> None:
        self.mode = "none"
        self.set(mode)
        self.scrapes = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def set(self, mode: object) -> None:
        if not isinstance(mode, str) or mode not in METRICS_FAULTS:
            raise ValueError(f"metrics fault must be one of {', '.join(METRICS_FAULTS)}, not {mode!r}")
        self.mode = mode

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "scrapes": self.scrapes,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


class SimulatedServer:
    """One simulated model server listening on its own address. With `metrics_fault` (a mode of METRICS_FAULTS)
    the fault-injection endpoint METRICS_FAULT_PATH is served too (GET: state, PUT {"mode": ...}: switch)."""

    def __init__(
        self,
        listen: str,
        config: ServerConfig = ServerConfig(),
        adapters: Mapping[str, str] | None = None,
        metrics_fault: str | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.model = ServerModel(WallClock(), config, adapters, name=listen)
        self.metrics_page = MetricsPage(self.model)
        self._runner: web.AppRunner | None = None
        self.metrics_fault = MetricsFault(metrics_fault) if metrics_fault is not None else None

    @property
    def address(self) -> str:
        """`ip:port` the server listens on (the real port once started, when asked for port 0)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening (inside the running loop)."""
        app = web.Application(middlewares=[self._errors], client_max_size=_MAX_BODY)
        app.on_response_prepare.append(self._stamp_headers)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self._chat),
                web.post("/v1/completions", self._completions),
                web.post("/v1/chat/completions/render", self._render_chat),
                web.post("/v1/completions/render", self._render_completion),
                web.get("/v1/models", self._models),
                web.post("/tokenize", self._tokenize),
                web.post("/v1/load_lora_adapter", self._load_adapter),
                web.post("/v1/unload_lora_adapter", self._unload_adapter),
                web.get("/health", self._health),
                web.get("/metrics", self._metrics),
            ]
        )
        if self.metrics_fault is not None:
            app.add_routes(
                [web.get(METRICS_FAULT_PATH, self._fault_state), web.put(METRICS_FAULT_PATH, self._set_fault)]
            )
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info(
            "simulated server listening",
            extra={
                "address": self.address,
                "model": self.model.config.model,
                "engine": self.model.config.engine,
                "adapters": sorted(self.model.adapters),
            },
        )

    async def stop(self) -> None:
        """Stop listening and abort whatever is still in flight."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.model.close()
            log.info("simulated server stopped", extra={"address": self.address})

    async def __aenter__(self) -> SimulatedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    # -- cross-cutting ---------------------------------------------------------------------------------------

    async def _stamp_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[SERVED_BY_HEADER] = self.address
        picked = request.headers.get(DESTINATION_HEADER)
        if picked:
            response.headers[PICKED_ECHO_HEADER] = picked.split(",", 1)[0].strip()
        for item in request.headers.getall(ECHO_SET_HEADER, ()):
            for pair in item.split(","):
                name, sep, value = pair.partition(":")
                if sep and name.strip():
                    response.headers[name.strip()] = value.strip()

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.body(), exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json(error_body(exc.status, exc.reason), exc.status)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("request failed", extra={"address": self.address, "path": request.path})
            return _json(error_body(500, "internal error in the simulated server"), 500)

    # -- generation ------------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _render_chat(self, request: web.Request) -> web.Response:
        return await self._render(request, chat=True)

    async def _render_completion(self, request: web.Request) -> web.Response:
        return await self._render(request, chat=False)

    async def _render(self, request: web.Request, chat: bool) -> web.Response:
        """vLLM's render endpoints: the request as a token-in generate request (its prompt's token ids), without
        generating; routers such as vllm-router's cache-aware policy key their prefix index on these ids."""
        spec = parse_generation(await request.read(), chat)
        try:
            self.model.resolve(spec.model)
        except UnknownModelError as exc:
            raise ApiError(404, str(exc), "model") from None
        rendered: dict[str, Any] = {
            "request_id": response_id(chat),
            "token_ids": list(self.model.prompt_token_ids(spec.prompt)),
            "features": None,
            "sampling_params": {"max_tokens": spec.max_tokens},
            "model": spec.model,
            "stream": spec.stream,
            "stream_options": {"include_usage": spec.include_usage} if spec.stream else None,
            "cache_salt": None,
            "priority": 0,
        }
        return _json(rendered if chat else [rendered])  # vLLM answers a list for completions (one per prompt)

    async def _prefill_remotely(self, request: web.Request, raw: bytes, prefiller: str) -> None:
        """Have `prefiller` (`ip:port`) prefill the prompt first, as the decode pod's sidecar does in P/D
        disaggregation: the same request with max_tokens 1, not streamed, marked for remote decode."""
        body = orjson.loads(raw)
        body.update(max_tokens=1, stream=False, kv_transfer_params={"do_remote_decode": True})
        body.pop("max_completion_tokens", None)
        body.pop("stream_options", None)
        try:
            async with ClientSession(timeout=ClientTimeout(total=_PREFILL_TIMEOUT)) as session:
                async with session.post(f"http://{prefiller}{request.path}", data=orjson.dumps(body)) as answer:
                    await answer.read()
                    status = answer.status
        except (TimeoutError, ClientError, ValueError) as exc:
            raise ApiError(502, f"prefill on {prefiller} failed: {exc}") from None
        if status != 200:
            raise ApiError(502, f"prefill on {prefiller} answered {status}")

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        raw = await request.read()
        spec = parse_generation(raw, chat)
        prefiller = request.headers.get(PREFILLER_HOST_PORT_HEADER)
        if prefiller:
            await self._prefill_remotely(request, raw, prefiller)
        progress = asyncio.Event()

        def wake(_: Any) -> None:
            progress.set()

        try:
            sim = self.model.submit(
                spec.prompt,
                spec.max_tokens,
                spec.model,
                on_finish=wake,
                on_tokens=wake if spec.stream else None,
                output_tokens=spec.output_tokens,
                remote_prefilled=bool(prefiller),
            )
        except UnknownModelError as exc:
            raise ApiError(404, str(exc), "model") from None
        except InvalidRequestError as exc:
            raise ApiError(400, str(exc)) from None
        completion_id = response_id(chat)
        try:
            if not spec.stream:
                await progress.wait()
                answer: web.StreamResponse = _json(completion_body(spec, sim, completion_id))
                answer.headers[SERVED_MODEL_HEADER] = spec.model
                if prefiller:
                    answer.headers[PREFILLED_BY_HEADER] = prefiller
                return answer
            headers = {
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                SERVED_MODEL_HEADER: spec.model,
            }
            if prefiller:
                headers[PREFILLED_BY_HEADER] = prefiller
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            writer = ChunkWriter(spec, completion_id)
            while not sim.done:
                await progress.wait()
                progress.clear()
                await response.write(writer.events(sim))
            await response.write_eof()
            return response
        finally:
            if not sim.done:
                self.model.abort(sim)
            log.debug(
                "request served",
                extra={
                    "address": self.address,
                    "model": spec.model,
                    "prompt_tokens": sim.prompt_tokens,
                    "completion_tokens": sim.output_tokens,
                    "cached_tokens": sim.cached_tokens,
                    "ttft": sim.ttft,
                    "aborted": sim.aborted,
                },
            )

    # -- catalog and operations ------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        config, created = self.model.config, int(time.time())
        entries: list[tuple[str, str, str | None]] = [(config.model, config.model, None)]
        entries += [(name, path, config.model) for name, path in self.model.adapters.items()]
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": root,
                "parent": parent,
                "max_model_len": config.max_model_len,
            }
            for name, root, parent in entries
        ]
        return _json({"object": "list", "data": data})

    async def _tokenize(self, request: web.Request) -> web.Response:
        """vLLM's `/tokenize`: the token ids the server computes for a prompt or chat messages."""
        prompt = parse_tokenize(await _json_object(request))
        tokens = self.model.token_ids(prompt.text or "")
        return _json({"count": len(tokens), "max_model_len": self.model.config.max_model_len, "tokens": tokens})

    async def _load_adapter(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
            raise ApiError(400, "Both `lora_name` and `lora_path` must be provided.", "lora_name")
        try:
            self.model.load_adapter(name, path)
        except ValueError as exc:
            raise ApiError(400, str(exc), "lora_name") from None
        log.info("lora adapter loaded", extra={"address": self.address, "adapter": name, "path": path})
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload_adapter(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        name = body.get("lora_name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "`lora_name` must be provided.", "lora_name")
        try:
            self.model.unload_adapter(name)
        except UnknownModelError as exc:
            raise ApiError(404, str(exc), "lora_name") from None
        log.info("lora adapter unloaded", extra={"address": self.address, "adapter": name})
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _metrics(self, request: web.Request) -> web.Response:
        fault = self.metrics_fault
        if fault is None or fault.mode == "none":
            page = self.metrics_page.render(request.query.getall("name[]", ()))
            return web.Response(body=page, headers={"Content-Type": CONTENT_TYPE_LATEST})
        fault.scrapes += 1
        fault.in_flight += 1
        fault.max_in_flight = max(fault.max_in_flight, fault.in_flight)
        try:
            if fault.mode == "hang":
                await asyncio.Event().wait()  # until the scraper hangs up (the handler is cancelled)
            body = GARBAGE_METRICS[fault.scrapes % len(GARBAGE_METRICS)]
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        finally:
            fault.in_flight -= 1

    async def _fault_state(self, request: web.Request) -> web.Response:
        assert self.metrics_fault is not None  # the route exists only with fault injection on
        return _json(self.metrics_fault.state())

    async def _set_fault(self, request: web.Request) -> web.Response:
        assert self.metrics_fault is not None  # the route exists only with fault injection on
        mode = (await _json_object(request)).get("mode")
        try:
            self.metrics_fault.set(mode)
        except ValueError as exc:
            raise ApiError(400, str(exc), "mode") from None
        log.warning("metrics fault injected", extra={"address": self.address, "mode": mode})
        return _json(self.metrics_fault.state())


class SimulatedServers:
    """Several simulated servers in this process, started and stopped together."""

    def __init__(
        self,
        listens: Sequence[str],
        config: ServerConfig = ServerConfig(),
        adapters: Mapping[str, str] | None = None,
        metrics_fault: str | None = None,
    ) -> None:
        self.servers = [SimulatedServer(listen, config, adapters, metrics_fault) for listen in listens]

    @property
    def addresses(self) -> list[str]:
        """`ip:port` of every server, in order."""
        return [server.address for server in self.servers]

    async def start(self) -> None:
        """Start every server; if one cannot listen, stop the others and raise."""
        try:
            for server in self.servers:
                await server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every server."""
        for server in self.servers:
            await server.stop()

    async def __aenter__(self) -> SimulatedServers:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()

    def __getitem__(self, index: int) -> SimulatedServer:
        return self.servers[index]

    def __iter__(self) -> Iterator[SimulatedServer]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)


def _json(body: dict[str, Any] | list[dict[str, Any]], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body
