"""Mapping a rewritten model name back in a streamed response body, chunk by chunk.

When the picker rewrote the request's `model` (InferenceModelRewrite), the model server answers with the target
name; the client must see the name it asked for. `ModelNameMapper` replaces `"model":"<target>"` (and the spaced
`"model": "<target>"` some servers write) by the requested name. A match may straddle two chunks, so the mapper
holds back the end of a chunk only when it is the beginning of a match (at most one pattern length); SSE events end
in a blank line, so in practice nothing is held. Work per chunk is proportional to the chunk, never to the response.
"""

from __future__ import annotations

import orjson


class ModelNameMapper:
    """Rewrites `"model":"<served>"` to `"model":"<requested>"` across chunk boundaries."""

    __slots__ = ("_carry", "_longest", "_pairs")

    def __init__(self, served: str, requested: str) -> None:
        served_json, requested_json = orjson.dumps(served), orjson.dumps(requested)
        self._pairs = tuple(
            (b'"model"' + sep + served_json, b'"model"' + sep + requested_json) for sep in (b":", b": ")
        )
        self._longest = max(len(pattern) for pattern, _ in self._pairs)
        self._carry = b""

    @property
    def length_changes(self) -> bool:
        """Whether a rewrite changes the body length (then a content-length header must go)."""
        pattern, replacement = self._pairs[0]
        return len(pattern) != len(replacement)

    def feed(self, chunk: bytes, end_of_stream: bool = False) -> bytes:
        """Return the rewritten bytes that can be released now (everything when `end_of_stream`)."""
        data = self._carry + chunk if self._carry else chunk
        hold = 0 if end_of_stream else self._partial_tail(data)
        if hold:
            self._carry = data[-hold:]
            data = data[:-hold]
        else:
            self._carry = b""
        for pattern, replacement in self._pairs:
            if pattern in data:
                data = data.replace(pattern, replacement)
        return data

    def _partial_tail(self, data: bytes) -> int:
        """Length of the longest tail of `data` that begins a pattern and starts after the last full match."""
        size = len(data)
        last_full_end = 0
        for pattern, _ in self._pairs:
            found = data.rfind(pattern, max(0, size - 2 * self._longest))
            if found >= 0:
                last_full_end = max(last_full_end, found + len(pattern))
        window = data[max(last_full_end, size - self._longest + 1) :]
        start = window.find(b'"')
        while start >= 0:
            tail = window[start:]
            if any(pattern.startswith(tail) for pattern, _ in self._pairs):
                return len(tail)
            start = window.find(b'"', start + 1)
        return 0
