"""What the scheduler knows of one request: target model, headers, priority, routing hints and the prompt bytes.

`PromptInput.from_body` reproduces the bytes the reference picker hashes for approximate prefix-cache affinity
(it hashes characters, not tokens):

- chat completions: the JSON of `messages` as Go's `encoding/json` writes the router's `Message` struct:
  `[{"role":...,"content":...}]`, no spaces, `role` omitted when empty, `content` a string or a list of
  `{"type","text"?,"image_url":{"url"?},"input_audio":{"data"?,"format"?},"video_url":{"url"?}}` blocks
  (other message and block fields are dropped), with Go's HTML-safe escaping of `<`, `>`, `&`, U+2028, U+2029;
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


def _go_content_block(block: Any) -> dict[str, Any]:
    block = block if isinstance(block, dict) else {}
    out: dict[str, Any] = {"type": _text(block.get("type"))}
    if text := _text(block.get("text")):
        out["text"] = text
    image = block.get("image_url") if isinstance(block.get("image_url"), dict) else {}
    out["image_url"] = {"url": url} if (url := _text(image.get("url"))) else {}
    audio = block.get("input_audio") if isinstance(block.get("input_audio"), dict) else {}
    audio_out: dict[str, str] = {}
    if data := _text(audio.get("data")):
        audio_out["data"] = data
    if fmt := _text(audio.get("format")):
        audio_out["format"] = fmt
    out["input_audio"] = audio_out
    video = block.get("video_url") if isinstance(block.get("video_url"), dict) else {}
    out["video_url"] = {"url": url} if (url := _text(video.get("url"))) else {}
    return out


def _go_message(message: Any) -> dict[str, Any]:
    message = message if isinstance(message, dict) else {}
    out: dict[str, Any] = {}
    if role := _text(message.get("role")):
        out["role"] = role
    content = message.get("content")
    if isinstance(content, list):
        out["content"] = [_go_content_block(block) for block in content]
    else:
        out["content"] = _text(content)
    return out


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
            messages = body["messages"] if isinstance(body["messages"], list) else []
            return cls(go_json([_go_message(message) for message in messages], sort_keys=False), salt)
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
