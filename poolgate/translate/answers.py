"""The answers the gateway gives itself, as OpenAI-style JSON errors.

When Envoy answers a request on its own (no route for the model, no model in the body, a pool's picker down, request
headers over the limit, an invalid backend, a rule poolgate does not serve), the client gets the same error shape the
picker and the model servers use: `{"error": {"message", "type", "param", "code"}}`, `type` the error class of the
status (as vLLM names it) and `code` a short name of the cause. `edge_errors` decides which answers a listener
rewrites; the emitters map each `Cause` to how their proxy recognises it (Envoy: a local-reply mapper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Cause = Literal[
    "model_not_found",  # no route matched, and the model router named the model
    "missing_model",  # no route matched a POST, and the body named no model (listeners that route by model)
    "route_not_found",  # no route matched
    "picker_unavailable",  # a FailClose pool's picker (or the model router) could not be reached
    "invalid_backend",  # the route's backend is invalid (the route's status says why)
    "rule_not_served",  # Envoy answered from the route itself (poolgate's own 500 for a rule it cannot serve)
    "headers_too_large",  # the request headers are over the listener's limit
    "malformed_request",  # the request is not valid HTTP (Envoy's codec refused it; the connection is closed)
]

# HTTP status -> the error `type` the picker and vLLM use for it
ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    431: "RequestHeaderFieldsTooLargeError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


@dataclass(frozen=True)
class EdgeError:
    """One answer the gateway rewrites: what caused it, and the status and error body the client gets. `message` may
    name `{model}` (the model the body named), `{pools}` (the route's InferencePools), `{route}` (the route's name),
    `{method}`, `{path}`, `{reply}` (the text Envoy or the route answered with) and `{details}` (Envoy's reason)."""

    cause: Cause
    status: int
    code: str
    message: str
    param: str | None = None

    @property
    def error_type(self) -> str:
        """The `type` of the JSON error body."""
        return ERROR_TYPES[self.status]


def edge_errors(model_routing: bool) -> tuple[EdgeError, ...]:
    """The answers a listener rewrites, most specific first; `model_routing`: the listener routes by model name."""
    by_model = (
        (
            EdgeError(
                "model_not_found",
                404,
                "model_not_found",
                "The model `{model}` does not exist: no route of this Gateway serves it.",
                "model",
            ),
            EdgeError(
                "missing_model",
                400,
                "missing_model",
                "The request body names no `model`; this Gateway routes requests by model.",
                "model",
            ),
        )
        if model_routing
        else ()
    )
    return (
        *by_model,
        EdgeError("route_not_found", 404, "route_not_found", "No route of this Gateway serves {method} {path}."),
        EdgeError(
            "picker_unavailable",
            503,
            "picker_unavailable",
            "The endpoint picker of InferencePool {pools} is unavailable and the pool fails closed; retry later.",
        ),
        EdgeError(
            "invalid_backend",
            500,
            "invalid_backend",
            "The backend of route {route} is invalid; the HTTPRoute's status (condition ResolvedRefs) says why.",
        ),
        EdgeError("rule_not_served", 500, "route_not_served", "{reply}"),
        EdgeError(
            "headers_too_large",
            431,
            "request_headers_too_large",
            "The request headers are larger than this Gateway accepts.",
        ),
        EdgeError("malformed_request", 400, "invalid_request", "The request is not valid HTTP ({details})."),
    )
