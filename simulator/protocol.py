"""The OpenAI wire format as the simulator speaks it: request validation, response bodies, stream chunks, errors.

Everything here is pure (bytes or dicts in, dicts out) so that the HTTP server stays a thin shell.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from simulator.model import Request
from simulator.tokens import Prompt, render_chat, synthetic_text

DEFAULT_MAX_TOKENS = 16
_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    405: "MethodNotAllowed",
    413: "RequestTooLarge",
    500: "InternalServerError",
}


class ApiError(Exception):
    """A request the server answers with an OpenAI-style error."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON body: {"error": {"message", "type", "param", "code"}}."""
        return error_body(self.status, self.message, self.param)


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object for an HTTP status."""
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "Error"), "param": param, "code": status}}


@dataclass(frozen=True)
class GenerationRequest:
    """A validated `/v1/completions` or `/v1/chat/completions` request."""

    chat: bool
    model: str
    prompt: Prompt
    max_tokens: int
    output_tokens: int | None  # extension `sim_output_tokens`: generate fewer than max_tokens
    stream: bool
    include_usage: bool


def parse_generation(raw: bytes, chat: bool) -> GenerationRequest:
    """Validate a generation request body; raises ApiError(400) naming the offending field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "`model` is required and must be a non-empty string.", "model")
    prompt = _chat_prompt(body.get("messages")) if chat else _completion_prompt(body.get("prompt"))
    limit_field = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(limit_field)
    max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else _positive_int(max_tokens, limit_field)
    output_tokens = body.get("sim_output_tokens")
    if output_tokens is not None:
        output_tokens = _positive_int(output_tokens, "sim_output_tokens")
    n = body.get("n")
    if n is not None and n != 1:
        raise ApiError(400, "The simulator supports only n=1.", "n")
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, "`stream` must be a boolean.", "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise ApiError(400, "Stream options can only be defined when `stream=True`.", "stream_options")
        if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
            raise ApiError(400, "`stream_options` must be an object with a boolean `include_usage`.", "stream_options")
        include_usage = options.get("include_usage", False)
    return GenerationRequest(
        chat=chat,
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        output_tokens=output_tokens,
        stream=stream,
        include_usage=include_usage,
    )


def parse_tokenize(body: dict[str, Any]) -> Prompt:
    """The prompt of a `/tokenize` request (vLLM's: `messages`, rendered as a chat prompt, or a text `prompt`);
    raises ApiError(400) naming the offending field."""
    if body.get("messages") is not None:
        return _chat_prompt(body["messages"])
    if isinstance(body.get("prompt"), str):
        return Prompt.from_text(body["prompt"])
    raise ApiError(400, "`messages` (a list) or `prompt` (a string) is required.", "prompt")


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"`{field}` must be a positive integer, not {value!r}.", field)
    return value


def _chat_prompt(messages: Any) -> Prompt:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` is required and must be a non-empty list.", "messages")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, f"messages[{index}] must be an object with a string `role`.", "messages")
        turns.append((message["role"], _message_text(message.get("content"), index)))
    return Prompt.from_text(render_chat(turns))


def _message_text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{index}].content: only text parts are supported.", "messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise ApiError(400, f"messages[{index}].content must be a string or a list of text parts.", "messages")


def _completion_prompt(prompt: Any) -> Prompt:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return Prompt.from_text(prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**63 for t in prompt)
    ):
        return Prompt.from_token_ids(prompt)
    raise ApiError(
        400,
        "`prompt` must be a string, a list of token ids, or a one-element list of either "
        "(batched prompts are not supported).",
        "prompt",
    )


def usage(request: Request) -> dict[str, Any]:
    """The `usage` object of a finished request."""
    return {
        "prompt_tokens": request.prompt_tokens,
        "completion_tokens": request.output_tokens,
        "total_tokens": request.prompt_tokens + request.output_tokens,
        "prompt_tokens_details": {"cached_tokens": request.cached_tokens},
    }


def response_id(chat: bool) -> str:
    """A fresh completion id."""
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def completion_body(spec: GenerationRequest, request: Request, completion_id: str) -> dict[str, Any]:
    """The body of a non-streamed response."""
    text = synthetic_text(0, request.output_tokens)
    if spec.chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": request.finish_reason,
        }
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": request.finish_reason}
    return {
        "id": completion_id,
        "object": "chat.completion" if spec.chat else "text_completion",
        "created": int(time.time()),
        "model": spec.model,
        "choices": [choice],
        "usage": usage(request),
    }


class ChunkWriter:
    """Builds the server-sent events of one streamed response, token by token."""

    def __init__(self, spec: GenerationRequest, completion_id: str) -> None:
        self.spec = spec
        self.sent = 0  # tokens already sent
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk" if spec.chat else "text_completion",
            "created": int(time.time()),
            "model": spec.model,
        }

    def events(self, request: Request) -> bytes:
        """The events for the tokens generated since the last call, and the closing events once finished."""
        out = []
        total = request.output_tokens
        if self.spec.chat and self.sent == 0 and total:
            out.append(
                self._chunk(
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                )
            )
        for position in range(self.sent, total):
            reason = request.finish_reason if request.done and position == total - 1 else None
            text = synthetic_text(position, 1)
            choice = (
                {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": reason}
                if self.spec.chat
                else {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
            )
            out.append(self._chunk(choice))
        self.sent = total
        if request.done:
            if self.spec.include_usage:
                out.append(_event({**self._base, "choices": [], "usage": usage(request)}))
            out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        chunk: dict[str, Any] = {**self._base, "choices": [choice]}
        if self.spec.include_usage:
            chunk["usage"] = None
        return _event(chunk)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
