"""The Flask application serving every hook: POST JSON in, JSON out; `/healthz` for probes.

Answers: 200 with the hook's response; 400 with a JSON message for a request that is not a Metacontroller request
this hook can answer; 413 for a body over the size limit; 404/405 for unknown paths and methods; 500 (JSON, no
traceback; the traceback goes to the log) only if a hook has a bug. Responses are byte-identical for identical
requests: keys are sorted and nothing in them depends on the clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from hooks import envoy_gateway, gateway, gatewayclass, httproute, inferencepool
from hooks.metacontroller import BadRequest
from hooks.settings import HookSettings

Hook = Callable[[object, HookSettings], dict]

# URL path -> hook. The DecoratorControllers in metacontroller/ (and, opt-in, metacontroller/envoy-gateway/) call
# exactly these paths.
HOOKS: dict[str, Hook] = {
    "/gatewayclasses/sync": gatewayclass.sync,
    "/gatewayclass-finalizer/customize": gatewayclass.finalizer_customize,
    "/gatewayclass-finalizer/sync": gatewayclass.finalizer_sync,
    "/gateways/customize": gateway.customize,
    "/gateways/sync": gateway.sync,
    "/httproutes/customize": httproute.customize,
    "/httproutes/sync": httproute.sync,
    "/inferencepools/customize": inferencepool.customize,
    "/inferencepools/sync": inferencepool.sync,
    "/envoy-gateway/gateways/customize": envoy_gateway.gateway_customize,
    "/envoy-gateway/gateways/sync": envoy_gateway.gateway_sync,
    "/envoy-gateway/httproutes/customize": envoy_gateway.route_customize,
    "/envoy-gateway/httproutes/sync": envoy_gateway.route_sync,
    "/envoy-gateway/inferencepools/customize": envoy_gateway.pool_customize,
    "/envoy-gateway/inferencepools/sync": envoy_gateway.pool_sync,
}
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024

log = logging.getLogger("poolgate.hooks")


def create_app(settings: HookSettings | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> Flask:
    """The Flask app serving every hook in HOOKS with these settings, refusing bodies over `max_request_bytes`."""
    settings = settings or HookSettings()
    app = Flask("poolgate.hooks")
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes
    for path, hook in HOOKS.items():
        app.add_url_rule(path, path, _view(hook, settings), methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: _json(200, {"status": "ok"}), methods=["GET"])
    app.before_request(_start_timer)
    app.after_request(_log_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    return app


def _view(hook: Hook, settings: HookSettings) -> Callable[[], Response]:
    def view() -> Response:
        try:
            body = orjson.loads(request.get_data(cache=False))
        except orjson.JSONDecodeError as error:
            return _error(400, f"the request body is not valid JSON: {error}")
        try:
            return _json(200, hook(body, settings))
        except BadRequest as error:
            return _error(400, str(error))

    return view


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    kind = "invalid_request_error" if status < 500 else "internal_error"
    return _json(status, {"error": {"message": message, "type": kind, "code": status}})


def _http_error(error: HTTPException) -> Response:
    return _error(error.code or 500, error.description or error.name)


def _internal_error(error: Exception) -> Response:
    log.exception("hook failed", extra={"path": request.path})
    return _error(500, "the hook failed on this request; the hooks log has the details")


def _start_timer() -> None:
    g.started = time.perf_counter()


def _log_request(response: Response) -> Response:
    elapsed_ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 3)
    level = logging.INFO if response.status_code < 400 else logging.WARNING
    log.log(
        level,
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": elapsed_ms,
            "bytes_in": request.content_length,
        },
    )
    return response
