"""Reading the parts of an inference request the picker acts on: the JSON body (parsed once) and its `model`."""

from __future__ import annotations

from typing import Any

import orjson

from picker.server.errors import bad_request
from poolgate.api.contract import (
    BASE_MODEL_NAME_HEADER,
    MODEL_NAME_HEADER,
    REQUEST_ID_HEADER,
    STEERING_HEADER,
    UPSTREAM_HEADER_ALIASES,
)

__all__ = [
    "BASE_MODEL_NAME_HEADER",
    "MODEL_NAME_HEADER",
    "REQUEST_ID_HEADER",
    "STEERING_HEADER",
    "address_list",
    "body_model",
    "current_header_names",
    "parse_body",
]


def current_header_names(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with each deprecated upstream alias (`x-gateway-inference-objective`, `x-slo-ttft-ms`, ...) also under
    its current `x-llm-d-*` name when that name is absent, so the picker and its plugins read current names only
    (the current name wins when a request carries both, as upstream reads it first)."""
    for current, deprecated in UPSTREAM_HEADER_ALIASES:
        if current not in headers and deprecated in headers:
            headers[current] = headers[deprecated]
    return headers


_CONTROL_CHARACTERS = {chr(c) for c in range(0x20)} | {"\x7f"}


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; raises RequestError(400) for anything else (invalid UTF-8, invalid or too
    deeply nested JSON, a JSON value that is not an object)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"The request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def body_model(body: dict[str, Any]) -> str:
    """The body's `model`: a non-empty string without control characters; raises RequestError(400) otherwise."""
    model = body.get("model")
    if model is None:
        raise bad_request("The request body has no `model`.", "model")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` must be a non-empty string.", "model")
    if not _CONTROL_CHARACTERS.isdisjoint(model):
        raise bad_request("`model` must not contain control characters.", "model")
    return model


def address_list(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of `ip[:port]` (the conformance steering header), None when absent."""
    if value is None:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())
