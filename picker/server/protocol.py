"""Building and reading ext_proc messages (envoy.service.ext_proc.v3): the few shapes the picker sends and reads.

Replies that never change (CONTINUE for request or response headers, an empty trailers reply) are built once. The
others are filled in place (`reply.a.b.c = value`) rather than nested constructors, which copy every sub-message
into its parent: a headers reply costs a third of the time that way (measured with upb protobuf).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest, ProcessingResponse
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

from picker.server.errors import RequestError
from poolgate.api.contract import (
    DESTINATION_HEADER,
    LB_METADATA_NAMESPACE,
    PICK_ID_KEY,
    SERVED_KEY,
    SUBSET_HINT_NAMESPACE,
    SUBSET_KEY,
)

EXT_PROC_ATTRIBUTES = "envoy.filters.http.ext_proc"  # where Envoy puts request/response attributes
UPSTREAM_ADDRESS_ATTRIBUTE = "upstream.address"

# ProcessingMode.BodySendMode values (envoy.extensions.filters.http.ext_proc.v3)
NONE, STREAMED, BUFFERED, BUFFERED_PARTIAL, FULL_DUPLEX_STREAMED = 0, 1, 2, 3, 4

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

CONTINUE_REQUEST_HEADERS = ProcessingResponse(request_headers=ext_proc.HeadersResponse())
CONTINUE_RESPONSE_HEADERS = ProcessingResponse(response_headers=ext_proc.HeadersResponse())
CONTINUE_REQUEST_BODY = ProcessingResponse(request_body=ext_proc.BodyResponse())
CONTINUE_RESPONSE_BODY = ProcessingResponse(response_body=ext_proc.BodyResponse())
CONTINUE_REQUEST_TRAILERS = ProcessingResponse(request_trailers=ext_proc.TrailersResponse())
CONTINUE_RESPONSE_TRAILERS = ProcessingResponse(response_trailers=ext_proc.TrailersResponse())


def header_map(message: ext_proc.HttpHeaders) -> dict[str, str]:
    """The headers of an HttpHeaders message as {lower-case name: value} (Envoy sends `raw_value` bytes)."""
    return {h.key: h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value for h in message.headers.headers}


def header_mutation(
    set_headers: Mapping[str, str] | None = None, remove: Iterable[str] = ()
) -> ext_proc.HeaderMutation:
    """Set (overwriting) and remove headers."""
    mutation = ext_proc.HeaderMutation()
    for key, value in (set_headers or {}).items():
        option = mutation.set_headers.add()
        option.header.key = key
        option.header.raw_value = value.encode()
        option.append_action = _OVERWRITE
    mutation.remove_headers.extend(remove)
    return mutation


def destination_metadata(destination: str, pick_id: str | None = None) -> struct_pb2.Struct:
    """Dynamic metadata `envoy.lb: {x-gateway-destination-endpoint: destination}`, with the pick's id when an
    observer call will claim it."""
    metadata = struct_pb2.Struct()
    fields = metadata.fields[LB_METADATA_NAMESPACE].struct_value.fields
    fields[DESTINATION_HEADER].string_value = destination
    if pick_id is not None:
        fields[PICK_ID_KEY].string_value = pick_id
    return metadata


def pick_id(request: ProcessingRequest) -> str | None:
    """The pick id Envoy forwards in `envoy.lb` metadata to an observer call, None if absent."""
    lb = request.metadata_context.filter_metadata.get(LB_METADATA_NAMESPACE)
    if lb is None:
        return None
    value = lb.fields.get(PICK_ID_KEY)
    return value.string_value or None if value is not None else None


def request_headers_reply(
    mutation: ext_proc.HeaderMutation, metadata: struct_pb2.Struct | None = None, clear_route_cache: bool = False
) -> ProcessingResponse:
    """The reply to the request headers: header mutation, optional dynamic metadata and route cache clearing."""
    reply = ProcessingResponse()
    common = reply.request_headers.response
    common.header_mutation.CopyFrom(mutation)
    common.clear_route_cache = clear_route_cache
    if metadata is not None:
        reply.dynamic_metadata.CopyFrom(metadata)
    return reply


def request_body_reply(
    mutation: ext_proc.HeaderMutation,
    metadata: struct_pb2.Struct | None = None,
    body: bytes | None = None,
    clear_route_cache: bool = False,
) -> ProcessingResponse:
    """The reply to a buffered request body: header mutation, optionally a new body, and dynamic metadata."""
    reply = ProcessingResponse()
    common = reply.request_body.response
    common.header_mutation.CopyFrom(mutation)
    common.clear_route_cache = clear_route_cache
    if body is not None:
        common.body_mutation.body = body
    if metadata is not None:
        reply.dynamic_metadata.CopyFrom(metadata)
    return reply


def streamed_request_body(data: bytes, end_of_stream: bool) -> ProcessingResponse:
    """One chunk of the request body echoed back in full-duplex mode."""
    reply = ProcessingResponse()
    chunk = reply.request_body.response.body_mutation.streamed_response
    chunk.body = data
    chunk.end_of_stream = end_of_stream
    return reply


def streamed_response_body(data: bytes, end_of_stream: bool) -> ProcessingResponse:
    """One chunk of the response body sent back in full-duplex mode."""
    reply = ProcessingResponse()
    chunk = reply.response_body.response.body_mutation.streamed_response
    chunk.body = data
    chunk.end_of_stream = end_of_stream
    return reply


def replaced_response_body(data: bytes, mutation: ext_proc.HeaderMutation | None = None) -> ProcessingResponse:
    """The reply to a STREAMED or BUFFERED response body chunk that replaces it with `data`."""
    reply = ProcessingResponse()
    common = reply.response_body.response
    if mutation is not None:
        common.header_mutation.CopyFrom(mutation)
    common.body_mutation.body = data
    return reply


def response_headers_reply(mutation: ext_proc.HeaderMutation) -> ProcessingResponse:
    """The reply to the response headers."""
    reply = ProcessingResponse()
    reply.response_headers.response.header_mutation.CopyFrom(mutation)
    return reply


def immediate_ok(body: bytes) -> ProcessingResponse:
    """An ImmediateResponse that answers the client 200 with this JSON body."""
    return ProcessingResponse(
        immediate_response=ext_proc.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=http_status_pb2.OK),
            headers=header_mutation({"content-type": "application/json"}),
            body=body,
            details="poolgate_model_list",
        )
    )


def immediate_response(error: RequestError) -> ProcessingResponse:
    """An ImmediateResponse that answers the client with the error's status and JSON body."""
    return ProcessingResponse(
        immediate_response=ext_proc.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=error.status),
            headers=header_mutation({"content-type": "application/json", **error.headers}),
            body=error.body(),
            details=f"poolgate_picker_{error.status}",
        )
    )


def subset_hint(request: ProcessingRequest) -> tuple[str, ...] | None:
    """The proxy's subset hint (`ip[:port]` entries) from the request's metadata, None when absent."""
    namespace = request.metadata_context.filter_metadata.get(SUBSET_HINT_NAMESPACE)
    if namespace is None or SUBSET_KEY not in namespace.fields:
        return None
    value = namespace.fields[SUBSET_KEY]
    if value.HasField("list_value"):
        return tuple(v.string_value for v in value.list_value.values if v.string_value)
    if value.HasField("string_value"):
        return tuple(part.strip() for part in value.string_value.split(",") if part.strip())
    return ()


def served_endpoint(request: ProcessingRequest) -> str | None:
    """The endpoint that served the request: `envoy.lb` metadata `x-gateway-destination-endpoint-served`, else the
    `upstream.address` response attribute (when the filter asks Envoy for it); None if Envoy told neither."""
    lb = request.metadata_context.filter_metadata.get(LB_METADATA_NAMESPACE)
    if lb is not None:
        value = lb.fields.get(SERVED_KEY)
        if value is not None and value.string_value:
            return value.string_value
    attributes = request.attributes.get(EXT_PROC_ATTRIBUTES)
    if attributes is not None:
        value = attributes.fields.get(UPSTREAM_ADDRESS_ATTRIBUTE)
        if value is not None and value.string_value:
            return value.string_value
    return None
