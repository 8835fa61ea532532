"""Pure parts of the picker server: the streaming model-name mapper, the usage tail, request parsing, errors."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picker.server import protocol
from picker.server.errors import RequestError
from picker.server.requests import address_list, body_model, parse_body
from picker.server.rewrite import ModelNameMapper
from picker.server.usage import TAIL_BYTES, UsageTail, parse_usage


def feed_all(mapper: ModelNameMapper, chunks: list[bytes]) -> bytes:
    out = b""
    for i, chunk in enumerate(chunks):
        out += mapper.feed(chunk, end_of_stream=i == len(chunks) - 1)
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            [
                b'"model":"tgt-v2"',
                b'"model": "tgt-v2"',
                b'"model":"tgt-v2x"',
                b'"mod',
                b'el"',
                b'"model":"',
                b"tgt",
                b'"',
                b"data: ",
                b"\n\n",
                b"{}",
                b"x",
            ]
        ),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_mapper_output_equals_a_whole_body_replace_whatever_the_chunking(parts, cuts):
    body = b"".join(parts)
    expected = body.replace(b'"model":"tgt-v2"', b'"model":"tgt"').replace(b'"model": "tgt-v2"', b'"model": "tgt"')
    assert feed_all(ModelNameMapper("tgt-v2", "tgt"), split(body, cuts)) == expected


def test_mapper_holds_only_a_possible_match_prefix():
    mapper = ModelNameMapper("served", "asked")
    assert mapper.feed(b'data: {"x":1}\n\n') == b'data: {"x":1}\n\n'  # an SSE event is released whole
    assert mapper.feed(b'{"id":"1","mod') == b'{"id":"1",'
    assert mapper.feed(b'el":"serv') == b""
    assert mapper.feed(b'ed","c":2}') == b'"model":"asked","c":2}'
    assert mapper.feed(b'"model":"served', end_of_stream=True) == b'"model":"served'  # no closing quote: kept
    assert not ModelNameMapper("same-len", "SAME-LEN").length_changes
    assert ModelNameMapper("long-name", "short").length_changes


def test_mapper_escapes_names_as_json():
    mapper = ModelNameMapper('we"ird/é', "plain")
    assert mapper.feed(orjson.dumps({"model": 'we"ird/é'}), end_of_stream=True) == b'{"model":"plain"}'


@pytest.mark.parametrize(
    "tail, expected",
    [
        (
            b'data: {"usage":null}\n\ndata: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}\n\n'
            b"data: [DONE]\n\n",
            (5, 3, 0),
        ),
        (
            b'{"choices":[{"text":"\\"usage\\": {\\"prompt_tokens\\": 9}"}],"usage": {"prompt_tokens": 2, '
            b'"completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}}}',
            (2, 1, 1),
        ),
        (
            b'{"usage": {"prompt_tokens": 4, "completion_tokens": 6, "prompt_tokens_details": null}, "x": "}"}',
            (4, 6, 0),
        ),
        (b'data: {"usage":{"prompt_tokens":5,"completion_tok', None),  # cut off
        (b'{"usage": null}', None),
        (b"no usage here", None),
        (b'{"usage": {"prompt_tokens": "many", "completion_tokens": true}}', (0, 0, 0)),
    ],
)
def test_parse_usage_reads_the_last_complete_usage_object(tail, expected):
    usage = parse_usage(tail)
    assert (None if usage is None else (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)) == expected


def test_usage_tail_keeps_bounded_memory_and_finds_usage_at_the_end():
    tail = UsageTail()
    for _ in range(200):
        tail.feed(b"x" * 10_000)
        assert len(tail._tail) <= TAIL_BYTES
    tail.feed(b'{"usage":{"prompt_tokens":1,"completion_tokens":2}}')
    assert tail.usage().completion_tokens == 2
    tail.feed(b"y" * (TAIL_BYTES * 2))
    assert tail.usage() is None


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"text"', b"\xff", b"[" * 2000 + b"]" * 2000, b"1e999"])
def test_parse_body_refuses_everything_but_a_json_object(raw):
    with pytest.raises(RequestError) as caught:
        parse_body(raw)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "body, ok",
    [
        ({"model": "m"}, True),
        ({}, False),
        ({"model": None}, False),
        ({"model": ""}, False),
        ({"model": ["m"]}, False),
        ({"model": "a\tb"}, False),
        ({"model": "a\x7f"}, False),
        ({"model": "llama/3.1 é"}, True),
    ],
)
def test_body_model_validation(body, ok):
    if ok:
        assert body_model(body) == body["model"]
    else:
        with pytest.raises(RequestError) as caught:
            body_model(body)
        assert (caught.value.status, caught.value.param) == (400, "model")


def test_error_bodies_are_openai_style_with_upstream_metric_codes():
    for status, error_type, code in (
        (400, "BadRequestError", "BadRequest"),
        (404, "NotFoundError", "NotFound"),
        (413, "RequestTooLarge", "BadRequest"),
        (429, "RateLimitError", "ResourceExhausted"),
        (503, "ServiceUnavailableError", "ServiceUnavailable"),
    ):
        error = RequestError(status, "why", "model")
        assert orjson.loads(error.body()) == {
            "error": {"message": "why", "type": error_type, "param": "model", "code": status}
        }
        assert error.metric_code == code
        reply = protocol.immediate_response(error)
        assert reply.immediate_response.status.code == status


def test_address_list_and_metadata_readers():
    assert address_list(None) is None
    assert address_list(" 10.0.0.1 , 10.0.0.2:8000,,") == ("10.0.0.1", "10.0.0.2:8000")
    request = protocol.ProcessingRequest()
    assert protocol.subset_hint(request) is None and protocol.served_endpoint(request) is None
    request.metadata_context.filter_metadata["envoy.lb.subset_hint"].update(
        {"x-gateway-destination-endpoint-subset": "10.0.0.1:8000, 10.0.0.2"}
    )
    assert protocol.subset_hint(request) == ("10.0.0.1:8000", "10.0.0.2")
    request.attributes["envoy.filters.http.ext_proc"].update({"upstream.address": "10.0.0.2:8000"})
    assert protocol.served_endpoint(request) == "10.0.0.2:8000"
    request.metadata_context.filter_metadata["envoy.lb"].update(
        {"x-gateway-destination-endpoint-served": "10.0.0.1:8000"}
    )
    assert protocol.served_endpoint(request) == "10.0.0.1:8000"  # the metadata wins over the attribute
