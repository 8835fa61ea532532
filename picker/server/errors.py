"""Request errors the picker answers itself, as OpenAI-style JSON bodies.

Every error becomes an ext_proc ImmediateResponse with `content-type: application/json` and the body
`{"error": {"message", "type", "param", "code"}}` where `type` is the error class name vLLM (and poolgate's simulator)
uses for the HTTP status and `code` is the status number. `metric_code` is the `error_code` label of
`inference_objective_request_error_total` (and `llm_d_epp_request_error_total`), spelled as the upstream endpoint
picker spells it (llm-d router v0.10: `BadRequest`, `NotFound`, `ResourceExhausted`, `ServiceUnavailable`,
`Internal`, `ModelServerError`). `headers` go on the answer next to the JSON content type, e.g. upstream's
`x-llm-d-request-dropped-reason: rejected-saturated` on a 429.
"""

from __future__ import annotations

import orjson

from poolgate.api.contract import DROPPED_REASON_HEADER, DROPPED_SATURATED

# HTTP status -> (error type in the body, upstream error code label)
_KINDS: dict[int, tuple[str, str]] = {
    400: ("BadRequestError", "BadRequest"),
    404: ("NotFoundError", "NotFound"),
    413: ("RequestTooLarge", "BadRequest"),
    429: ("RateLimitError", "ResourceExhausted"),
    500: ("InternalServerError", "Internal"),
    503: ("ServiceUnavailableError", "ServiceUnavailable"),
}


class RequestError(Exception):
    """A request the picker refuses: HTTP status, message and the offending body field (if any)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}

    @property
    def error_type(self) -> str:
        """The `type` of the JSON error body."""
        return _KINDS.get(self.status, ("Error", "Internal"))[0]

    @property
    def metric_code(self) -> str:
        """The `error_code` label this error is counted under."""
        return _KINDS.get(self.status, ("Error", "Internal"))[1]

    def body(self) -> bytes:
        """The OpenAI-style JSON error body."""
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.status}}
        )


def saturated(message: str) -> RequestError:
    """429 with upstream's `x-llm-d-request-dropped-reason: rejected-saturated`: the pool cannot take the request."""
    return RequestError(429, message, headers={DROPPED_REASON_HEADER: DROPPED_SATURATED})


def bad_request(message: str, param: str | None = None) -> RequestError:
    """400: the body is not valid JSON, not an object, or a field is missing or invalid."""
    return RequestError(400, message, param)
