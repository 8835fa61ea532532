"""The scraper's HTTP/1.1 response reader: lengths, chunks, close-delimited bodies, and what it refuses."""

import pytest

from picker.pool.http import MAX_BODY_BYTES, HttpError, ResponseReader


def read(*parts):
    reader = ResponseReader()
    done = [reader.feed(part) for part in parts]
    return reader, done


def test_content_length_body_split_anywhere():
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
    for cut in range(1, len(answer)):
        reader, done = read(answer[:cut], answer[cut:])
        assert done == [False, True] and reader.body == b"hello world" and reader.status == 200
        assert reader.keep_alive


def test_chunked_body_with_extensions_and_trailers():
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    for cut in (10, 50, 60, len(answer) - 1):
        reader, done = read(answer[:cut], answer[cut:])
        assert done == [False, True] and reader.body == b"hello world"


def test_a_body_read_until_close_and_connection_close_are_not_kept_alive():
    reader, done = read(b"HTTP/1.0 200 OK\r\n\r\npart one, ", b"part two")
    assert done == [False, False] and reader.finish_at_close() and reader.body == b"part one, part two"
    assert not reader.keep_alive
    reader, _ = read(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert (reader.status, reader.keep_alive, reader.body) == (503, False, b"")


def test_garbage_and_oversized_answers_are_refused():
    with pytest.raises(HttpError, match="status line"):
        read(b"<html>\x00 not http\r\n\r\n")
    with pytest.raises(HttpError, match="Content-Length"):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(MAX_BODY_BYTES + 1).encode() + b"\r\n\r\n")
    with pytest.raises(HttpError, match="chunk size"):
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    with pytest.raises(HttpError, match="head too large"):
        read(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000)
