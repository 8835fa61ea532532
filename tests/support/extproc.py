"""Playing Envoy's side of ext_proc in tests: build the messages Envoy sends, drive real gRPC streams, read replies.

async with grpc.aio.insecure_channel(target) as channel:
    stream = ExtProcStream(channel, pool="default/pool")
    await stream.send(request_headers({":path": "/v1/completions"}))
    await stream.send(request_body(b'{"model": "m", "prompt": "hi"}', end_of_stream=True))
    replies = await stream.read(1 + 1)          # headers reply + one echoed body chunk
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from google.protobuf import json_format

FULL_DUPLEX_STREAMED, BUFFERED, STREAMED, NONE = 4, 2, 1, 0


def _header_map(headers: Mapping[str, str]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k.lower(), raw_value=v.encode()) for k, v in headers.items()]
    )


def request_headers(
    headers: Mapping[str, str] | None = None,
    end_of_stream: bool = False,
    request_mode: int | None = FULL_DUPLEX_STREAMED,
    response_mode: int = FULL_DUPLEX_STREAMED,
    metadata: Mapping[str, Mapping] | None = None,
) -> ext_proc.ProcessingRequest:
    """The first message of a stream (with `protocol_config`, as Envoy 1.40 sends it; request_mode None omits it)."""
    base = {
        ":method": "POST",
        ":path": "/v1/completions",
        ":authority": "gateway",
        ":scheme": "http",
        "content-type": "application/json",
    }
    message = ext_proc.ProcessingRequest(
        request_headers=ext_proc.HttpHeaders(
            headers=_header_map({**base, **(headers or {})}), end_of_stream=end_of_stream
        )
    )
    if request_mode is not None:
        message.protocol_config.request_body_mode = request_mode
        message.protocol_config.response_body_mode = response_mode
    _add_metadata(message, metadata)
    return message


def request_body(body: bytes, end_of_stream: bool = True) -> ext_proc.ProcessingRequest:
    return ext_proc.ProcessingRequest(request_body=ext_proc.HttpBody(body=body, end_of_stream=end_of_stream))


def request_trailers() -> ext_proc.ProcessingRequest:
    return ext_proc.ProcessingRequest(request_trailers=ext_proc.HttpTrailers())


def response_headers(
    headers: Mapping[str, str] | None = None,
    end_of_stream: bool = False,
    metadata: Mapping[str, Mapping] | None = None,
    attributes: Mapping[str, str] | None = None,
) -> ext_proc.ProcessingRequest:
    message = ext_proc.ProcessingRequest(
        response_headers=ext_proc.HttpHeaders(
            headers=_header_map({":status": "200", "content-type": "application/json", **(headers or {})}),
            end_of_stream=end_of_stream,
        )
    )
    _add_metadata(message, metadata)
    if attributes:
        message.attributes["envoy.filters.http.ext_proc"].update(dict(attributes))
    return message


def response_body(body: bytes, end_of_stream: bool = False) -> ext_proc.ProcessingRequest:
    return ext_proc.ProcessingRequest(response_body=ext_proc.HttpBody(body=body, end_of_stream=end_of_stream))


def response_trailers() -> ext_proc.ProcessingRequest:
    return ext_proc.ProcessingRequest(response_trailers=ext_proc.HttpTrailers())


def _add_metadata(message: ext_proc.ProcessingRequest, metadata: Mapping[str, Mapping] | None) -> None:
    for namespace, values in (metadata or {}).items():
        message.metadata_context.filter_metadata[namespace].update(dict(values))


class ExtProcStream:
    """One ext_proc stream, driven message by message like Envoy does; replies are collected as they arrive."""

    def __init__(self, channel: grpc.aio.Channel, pool: str | None = None, callout: str | None = None) -> None:
        metadata = []
        if pool is not None:
            metadata.append(("x-poolgate-pool", pool))
        if callout is not None:
            metadata.append(("x-poolgate-callout", callout))
        self.call = ext_proc_grpc.ExternalProcessorStub(channel).Process(metadata=tuple(metadata))
        self.replies: asyncio.Queue = asyncio.Queue()
        self.ended = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read_all())

    async def _read_all(self) -> None:
        try:
            async for reply in self.call:
                self.replies.put_nowait(reply)
        except grpc.aio.AioRpcError:
            pass
        finally:
            self.ended.set()

    async def send(self, *messages: ext_proc.ProcessingRequest) -> None:
        for message in messages:
            await self.call.write(message)

    async def read(self, count: int = 1, timeout: float = 5.0) -> list[ext_proc.ProcessingResponse]:
        """Wait for exactly `count` more replies (fails the test on timeout)."""
        return [await asyncio.wait_for(self.replies.get(), timeout) for _ in range(count)]

    async def nothing_pending(self, wait: float = 0.1) -> bool:
        """Whether no reply arrived within `wait` seconds (e.g. the headers reply held in full-duplex mode)."""
        await asyncio.sleep(wait)
        return self.replies.empty()

    async def close(self, timeout: float = 5.0) -> None:
        """Half-close (Envoy's end of the stream) and wait for the server to end it."""
        await self.call.done_writing()
        await asyncio.wait_for(self.ended.wait(), timeout)

    async def finished(self, timeout: float = 5.0) -> bool:
        """Whether the server ended the stream (within `timeout` seconds)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.ended.wait()), timeout)
        except TimeoutError:
            return False
        return True

    def cancel(self) -> None:
        """Reset the stream, as Envoy does when the client goes away."""
        self.call.cancel()


def header_values(mutation: ext_proc.HeaderMutation) -> dict[str, str]:
    """The headers a HeaderMutation sets, as {name: value}."""
    return {h.header.key: h.header.raw_value.decode() or h.header.value for h in mutation.set_headers}


def lb_metadata(reply: ext_proc.ProcessingResponse) -> dict:
    """The dynamic metadata of a reply as a plain dict."""
    return json_format.MessageToDict(reply.dynamic_metadata) if reply.HasField("dynamic_metadata") else {}
