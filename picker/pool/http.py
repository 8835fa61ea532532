"""A minimal HTTP/1.1 client connection for metrics scrapes: one keep-alive connection per endpoint, one GET at a time.

The scraper asks each endpoint for `/metrics` twenty times a second; a general client (aiohttp) costs ~0.3 ms of CPU
per GET, most of it per-request machinery a scrape does not need. `ScrapeConnection` is an asyncio protocol: `send`
writes a prepared request, `ResponseReader` assembles the answer from what arrives (Content-Length, chunked, or until
the server closes), and the owner is called back with the status and body, or with the reason the scrape failed. No
task, future or timer per scrape: the owner runs its timeouts.

A server closes a kept-alive connection it found idle too long (uvicorn, vLLM's server: after 5 s) whenever it likes,
and its close can cross the next GET on the wire. Such a GET was never answered and a GET can be sent again, so, as
HTTP clients do (RFC 9112 section 9.3.1; Go's net/http, urllib3), the failure tells the owner it may send the GET once
more on a new connection: a connection that had answered before was lost before any byte of the next answer came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024


class HttpError(Exception):
    """An answer that is not a well-formed HTTP/1.x response (or one too large to be a metrics page)."""


class ResponseReader:
    """Reads one HTTP/1.x response from the bytes fed to it as they arrive."""

    def __init__(self) -> None:
        self.status = 0
        self.keep_alive = True
        self._buffer = bytearray()
        self._body_at = -1  # where the body starts in the buffer, once the head is read
        self._length: int | None = None  # Content-Length, if given
        self._chunked = False
        self._chunks: list[bytes] = []
        self._chunk_at = 0  # where the next chunk's size line starts
        self.body = b""

    @property
    def started(self) -> bool:
        """Whether any byte of the answer has arrived (and the answer is not complete yet)."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the answer; returns True once the response is complete (then read `body`)."""
        if not self._buffer:  # the usual case, a whole answer in one read: read it where it is, unbuffered
            if self._read(data):
                return True
            self._buffer += data
            return False
        self._buffer += data
        return self._read(self._buffer)

    def _read(self, buffer: bytes | bytearray) -> bool:
        """Read on in the answer's bytes so far; returns True once the response is complete."""
        if self._body_at < 0:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise HttpError("response head too large")
                return False
            self._read_head(bytes(buffer[:head_end]))
            self._body_at = self._chunk_at = head_end + 4
        if self._chunked:
            return self._read_chunks(buffer)
        if self._length is not None:
            if len(buffer) - self._body_at >= self._length:
                self.body = bytes(buffer[self._body_at : self._body_at + self._length])
                return True
            return False
        if len(buffer) - self._body_at > MAX_BODY_BYTES:
            raise HttpError("response body too large")
        return False

    def finish_at_close(self) -> bool:
        """The server closed the connection: returns True if that ends a response read until close."""
        if self._body_at < 0 or self._chunked or self._length is not None:
            return False
        self.body = bytes(self._buffer[self._body_at :])
        return True

    def _read_head(self, head: bytes) -> None:
        known = _HEADS.get(head)
        if known is None:
            if len(_HEADS) >= _HEADS_KEPT:
                _HEADS.clear()
            known = _HEADS[head] = _parse_head(head)
        self.status, self.keep_alive, self._length, self._chunked = known

    def _read_chunks(self, buffer: bytes | bytearray) -> bool:
        while True:
            line_end = buffer.find(b"\r\n", self._chunk_at)
            if line_end < 0:
                return False
            size_text = bytes(buffer[self._chunk_at : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return False
                self.body = b"".join(self._chunks)
                return True
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                if data_end - self._body_at > MAX_BODY_BYTES:
                    raise HttpError("response body too large")
                return False
            self._chunks.append(bytes(buffer[line_end + 2 : data_end]))
            self._chunk_at = data_end + 2


_HEADS: dict[bytes, tuple[int, bool, int | None, bool]] = {}  # a head -> what `_parse_head` read from it
_HEADS_KEPT = 1024


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool]:
    """An answer's status, whether the connection stays open, its Content-Length and whether it is chunked. A server
    sends the same few heads again and again (the Date header changes once a second), so each is read once."""
    text = head.decode("latin-1")
    lines = text.lower().split("\r\n")  # header names and the values read are caseless
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("http/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {text.split(chr(13))[0][:100]!r}")
    keep_alive = parts[0] == "http/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name == "content-length":
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                raise HttpError(f"bad Content-Length {value[:50]!r}")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value.endswith("chunked")
        elif name == "connection":
            keep_alive = "close" not in value and (keep_alive or "keep-alive" in value)
    return int(parts[1]), keep_alive, None if chunked else length, chunked


class ScrapeConnection(asyncio.Protocol):
    """One keep-alive HTTP connection that carries one GET at a time for its owner.

    `on_response(connection, status, body)` is called for each complete answer, `on_failure(connection, detail,
    resend)` when the connection breaks or answers garbage while a GET is pending (the connection is then closed);
    `resend` is True when the GET may be sent again on a new connection: this one had answered before and was lost
    before any byte of the pending answer came (the server closed it, idle, as the GET crossed its close).
    """

    def __init__(
        self,
        on_response: Callable[[ScrapeConnection, int, bytes], None],
        on_failure: Callable[[ScrapeConnection, str, bool], None],
    ) -> None:
        self._on_response = on_response
        self._on_failure = on_failure
        self._transport: asyncio.Transport | None = None
        self._reader: ResponseReader | None = None  # set while a GET is pending
        self.closed = False
        self.reused = False  # whether an answer has come on this connection (the next GET reuses it)

    @property
    def idle(self) -> bool:
        """Whether the connection is open with no GET pending."""
        return self._transport is not None and not self.closed and self._reader is None

    def send(self, request: bytes) -> None:
        """Write a prepared GET; the connection must be idle."""
        assert self._transport is not None and self._reader is None
        self._reader = ResponseReader()
        self._transport.write(request)

    def close(self) -> None:
        """Drop the connection at once (a pending GET is abandoned without a callback)."""
        self.closed = True
        self._reader = None
        if self._transport is not None:
            self._transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:
            self._fail("data received with no request pending")
            return
        try:
            complete = reader.feed(data)
        except HttpError as error:
            self._fail(str(error))
            return
        if complete:
            self._complete(reader)

    def eof_received(self) -> bool:
        reader = self._reader
        if reader is not None and reader.finish_at_close():
            reader.keep_alive = False
            self._complete(reader)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed, self.closed = self.closed, True
        reader = self._reader
        if reader is not None and not was_closed:
            self._reader = None
            resend = self.reused and not reader.started
            self._on_failure(self, f"connection lost: {exc or 'closed by the server'}", resend)

    def _complete(self, reader: ResponseReader) -> None:
        self._reader = None
        self.reused = True
        if not reader.keep_alive:
            self.close()
        self._on_response(self, reader.status, reader.body)

    def _fail(self, detail: str) -> None:
        pending = self._reader is not None
        self.close()
        if pending:
            self._on_failure(self, detail, False)
