"""Token usage of a response, read from its tail without buffering the response.

OpenAI-compatible servers report usage in the JSON body (`"usage": {...}` after `choices`) or, when streaming with
`stream_options.include_usage`, in the last SSE event before `data: [DONE]`. Both end up in the last few hundred
bytes. `UsageTail` keeps the last `TAIL_BYTES` of the response (constant memory and constant work per chunk) and,
at the end, parses the last `"usage"` object found there.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

TAIL_BYTES = 16 * 1024
_KEY = b'"usage"'


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class UsageTail:
    """Keeps the tail of a response body and reads its usage at the end."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Append a response chunk, keeping only the last TAIL_BYTES."""
        if len(chunk) >= TAIL_BYTES:
            self._tail[:] = chunk[-TAIL_BYTES:]
            return
        self._tail += chunk
        excess = len(self._tail) - TAIL_BYTES
        if excess > 0:
            del self._tail[:excess]

    def usage(self) -> Usage | None:
        """The last usage object in the tail, or None if there is none (or it is not readable)."""
        return parse_usage(bytes(self._tail))


def parse_usage(tail: bytes) -> Usage | None:
    """Find the last `"usage": {...}` in `tail` and read its token counts."""
    position = len(tail)
    while True:
        position = tail.rfind(_KEY, 0, position)
        if position < 0:
            return None
        if position == 0 or tail[position - 1] != 0x5C:  # not an escaped quote inside a string
            found = _object_after(tail, position + len(_KEY))
            if found is not None:
                return found


def _object_after(data: bytes, start: int) -> Usage | None:
    """Read `: {...}` starting at `start`; None if it is not a complete object (e.g. `"usage": null`)."""
    index = start
    while index < len(data) and data[index] in b" \t\r\n":
        index += 1
    if index >= len(data) or data[index] != 0x3A:  # ':'
        return None
    index += 1
    while index < len(data) and data[index] in b" \t\r\n":
        index += 1
    if index >= len(data) or data[index] != 0x7B:  # '{'
        return None
    end = _matching_brace(data, index)
    if end is None:
        return None
    try:
        value = orjson.loads(data[index : end + 1])
    except orjson.JSONDecodeError:
        return None
    return Usage(
        prompt_tokens=_count(value.get("prompt_tokens")),
        completion_tokens=_count(value.get("completion_tokens")),
        cached_tokens=_count(
            (value.get("prompt_tokens_details") or {}).get("cached_tokens")
            if isinstance(value.get("prompt_tokens_details"), dict)
            else None
        ),
    )


def _matching_brace(data: bytes, start: int) -> int | None:
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(data)):
        byte = data[index]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                return index
    return None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
