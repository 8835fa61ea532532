"""What the scheduler knows of one request: target model, headers, priority, routing hints and the prompt bytes.

`PromptInput.from_body` gives the bytes the reference picker (v0.9+) tokenizes for approximate prefix-cache affinity
(its `estimate` token backend packs them as 4-byte pseudo-tokens, see `picker.scheduling.tokens`):

- chat completions: the JSON of `tools` (when present; Go's `encoding/json` form: compact, sorted keys, HTML-safe
  escaping of `<`, `>`, `&`, U+2028, U+2029), then each message's role followed by its content text (a string, or
  the text of its `text` blocks), not the JSON of `messages`;
- completions: the `prompt` string's UTF-8 bytes (a non-string prompt is JSON-encoded the same way);
- responses API (`input`): the JSON of `[{"instructions":..}?, {"tools":..}?, {"input":..}]`;
  embeddings (path ending in `/embeddings`): the JSON of `input`.

`cache_salt` from the body is folded into the first block hash, as upstream does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

CHARS_PER_TOKEN = 4  # the reference picker's estimate of characters per token

_HTML_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))
_LINE_SEPARATOR_ESCAPES = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"))


def go_json(value: Any, sort_keys: bool = True) -> bytes:
    """Encode a value as Go's `json.Marshal` would (compact, HTML-safe escapes, invalid UTF-16 as U+FFFD).

    Go sorts the keys of maps (`sort_keys`) but writes struct fields in declaration order: pass
    `sort_keys=False` for dicts built in struct order.
    """
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        encoded = orjson.dumps(value, option=option)
    except TypeError:  # lone surrogates: Go writes the replacement character
        encoded = orjson.dumps(_replace_surrogates(value), option=option)
    for raw, escaped in _HTML_ESCAPES:
        if raw in encoded:
            encoded = encoded.replace(raw, escaped)
    if b"\xe2" in encoded:  # a single-byte search first: searching the 3-byte sequences directly is slow
        for raw, escaped in _LINE_SEPARATOR_ESCAPES:
            encoded = encoded.replace(raw, escaped)
    return encoded


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _content_text(content: Any) -> str:
    """A message's content as text: the string, or the text of its `text` blocks joined."""
    if isinstance(content, list):
        return "".join(
            _text(block.get("text")) for block in content if isinstance(block, dict) and block.get("type") == "text"
        )
    return _text(content)


def chat_prompt_bytes(body: Mapping[str, Any]) -> bytes:
    """The bytes a chat request is tokenized from: the JSON of `tools` (if any), then each message's role and
    content text."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    parts = [go_json(body["tools"])] if body.get("tools") else []
    for message in messages:
        if isinstance(message, dict):
            parts.append(
                (_text(message.get("role")) + _content_text(message.get("content"))).encode("utf-8", "replace")
            )
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class PromptInput:
    """The prompt bytes hashed for prefix affinity, and the body's `cache_salt`."""

    data: bytes = b""
    cache_salt: str = ""

    @property
    def estimated_tokens(self) -> int:
        """The prompt length in tokens, estimated at 4 characters per token."""
        return len(self.data) // CHARS_PER_TOKEN

    @classmethod
    def from_body(cls, body: Mapping[str, Any], path: str = "") -> PromptInput:
        """Extract the hashed prompt bytes from a parsed OpenAI request body (see the module docstring)."""
        salt = _text(body.get("cache_salt"))
        if "messages" in body:
            return cls(chat_prompt_bytes(body), salt)
        if "prompt" in body:
            prompt = body["prompt"]
            return cls(prompt.encode("utf-8", "replace") if isinstance(prompt, str) else go_json(prompt), salt)
        if "input" in body:
            if path.endswith("/embeddings"):
                return cls(go_json(body["input"]), salt)
            parts = [{key: body[key]} for key in ("instructions", "tools") if body.get(key) is not None]
            parts.append({"input": body["input"]})
            return cls(go_json(parts), salt)
        return cls(b"", salt)


@dataclass(slots=True)
class SchedulingRequest:
    """One request to schedule.

    - `target_model`: the model after any rewrite (it seeds the prefix hashes and drives LoRA affinity);
    - `headers`: request headers with lower-case names (session affinity reads `x-session-token`);
    - `priority`: the InferenceObjective priority; below 0 the request may be shed under saturation;
    - `subset`: the proxy's subset hint (`ip` or `ip:port` entries), None when the proxy sent none;
    - `steering`: the conformance-test candidate list (`test-epp-endpoint-selection`), None when absent;
    - `base_model`: the base model when `target_model` is known to be a LoRA adapter;
    - `body`: the parsed request body (the precise prefix producer tokenizes it), None when there was none.
    """

    target_model: str
    prompt: PromptInput = field(default_factory=PromptInput)
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    request_id: str = ""
    subset: tuple[str, ...] | None = None
    steering: tuple[str, ...] | None = None
    base_model: str | None = None
    body: Mapping[str, Any] | None = None
