"""`poolgate bench overhead`: the harness on a tiny run of real processes (rows, modes, CPU accounting), plus its
parts that need no processes: HTTP framing of the load generator, wrk output, the gateway's objects."""

from __future__ import annotations

import os
import socketserver
import threading
from contextlib import contextmanager

import pytest

from poolgate.api import parse_objects
from poolgate.bench import overhead
from poolgate.bench.overhead import (
    Settings,
    add_overhead,
    bench_objects,
    gateways,
    mode_hosts,
    parse_wrk,
    python_load,
    response_end,
    run_overhead,
)
from tests.support.stacks import next_block

ROW_KEYS = {"mode", "workers", "concurrency", "rps", "p50_ms", "p99_ms", "picker_cpu_ms_per_req"}


def test_a_tiny_run_measures_every_mode_with_sane_cpu_accounting():
    settings = Settings(
        concurrencies=(1, 4), workers=(1,), duration=0.6, warmup=0.2, profile="llmd-default", address_block=next_block()
    )
    messages: list[str] = []
    rows = run_overhead(settings, messages.append)

    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        ("direct", 1),
        ("picker-duplex", 1),
        ("direct", 4),
        ("picker-duplex", 4),
        ("picker-buffered", 1),
        ("picker-buffered", 4),
    ]
    for row in rows:
        assert set(row) >= ROW_KEYS, row
        assert row["errors"] == 0 and row["requests"] > 0 and row["rps"] > 0, row
        assert 0 < row["p50_ms"] <= row["p99_ms"], row
        assert row["generator"] == "python"
        assert row["envoy_cpu_ms_per_req"] > 0 and row["backend_cpu_ms_per_req"] > 0, row
        elapsed_s = row["requests"] / row["rps"]
        for key in (
            "picker_cpu_ms_per_req",
            "envoy_cpu_ms_per_req",
            "backend_cpu_ms_per_req",
            "generator_cpu_ms_per_req",
        ):
            if row[key] is not None:  # no process can use more CPU than the machine has in the time measured
                assert row[key] * row["requests"] / 1e3 <= elapsed_s * os.cpu_count() * 1.1, (key, row)
        if row["mode"] == "direct":
            assert row["workers"] == 0 and row["picker_cpu_ms_per_req"] is None and row["added_p50_ms"] is None
        else:
            assert row["workers"] == 1 and row["picker_cpu_ms_per_req"] > 0, row
            assert row["response_path"] == "observed"
            direct = next(r for r in rows if r["mode"] == "direct" and r["concurrency"] == row["concurrency"])
            assert row["added_p50_ms"] == pytest.approx(row["p50_ms"] - direct["p50_ms"], abs=1e-3)
    assert any(m.startswith("starting a gateway") for m in messages)
    assert sum(m.startswith("done: ") for m in messages) == len(rows)


def test_gateways_put_direct_next_to_the_first_picker_mode_and_one_gateway_per_body_mode_and_worker_count():
    assert gateways(Settings(workers=(1, 2))) == [
        ("FULL_DUPLEX_STREAMED", 1, ["direct", "picker-duplex"]),
        ("BUFFERED", 1, ["picker-buffered"]),
        ("FULL_DUPLEX_STREAMED", 2, ["picker-duplex"]),
        ("BUFFERED", 2, ["picker-buffered"]),
    ]
    assert gateways(Settings(modes=("picker-buffered",), workers=(3,))) == [("BUFFERED", 3, ["picker-buffered"])]
    assert gateways(Settings(modes=("direct",), workers=(1,))) == [("FULL_DUPLEX_STREAMED", 1, ["direct"])]


def test_bench_objects_are_valid_and_give_each_picker_process_its_own_pool_copy():
    objects, problems = parse_objects(("bench", raw) for raw in bench_objects(3, 2, 18080, "llmd-default"))
    assert not problems, [str(p) for p in problems]
    pools = {o.name: o for o in objects if o.kind == "InferencePool"}
    assert set(pools) == {"direct", "picked-0", "picked-1", "picked-2"}
    assert pools["direct"].spec.endpoint_picker_ref is None
    assert [pools[f"picked-{i}"].spec.endpoint_picker_ref.name for i in range(3)] == [
        "picker-0",
        "picker-1",
        "picker-2",
    ]
    assert mode_hosts("direct", 3) == ["direct.bench"]
    assert mode_hosts("picker-buffered", 3) == ["picked-0.bench", "picked-1.bench", "picked-2.bench"]


def test_added_latency_is_relative_to_direct_at_the_same_concurrency():
    rows = [
        {"mode": "direct", "concurrency": 1, "p50_ms": 0.5, "p99_ms": 2.0},
        {"mode": "picker-duplex", "concurrency": 1, "p50_ms": 1.25, "p99_ms": 4.0},
        {"mode": "picker-duplex", "concurrency": 8, "p50_ms": 3.0, "p99_ms": 9.0},
    ]
    add_overhead(rows)
    assert [(r["added_p50_ms"], r["added_p99_ms"]) for r in rows] == [(None, None), (0.75, 2.0), (None, None)]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"modes": ("direct", "envoy")}, "modes"),
        ({"concurrencies": (0,)}, "concurrencies"),
        ({"workers": ()}, "workers"),
        ({"duration": 0}, "duration"),
        ({"generator": "ab"}, "generator"),
        ({"response_path": "async"}, "response path"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(settings, message):
    with pytest.raises(ValueError, match=message):
        Settings(**settings)


def test_response_framing_by_content_length_chunks_or_no_body():
    fixed = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\nhello"
    assert response_end(fixed) == (200, len(fixed))
    assert response_end(fixed[:-1]) is None
    assert response_end(fixed + b"HTTP/1.1") == (200, len(fixed))  # the next response is not consumed
    first, second = b"data: 0\r\n\r\n", b'data: {"x": "0\r\n\r\n"}\n\n'  # chunk data that looks like an end
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(first)
        + first
        + b"\r\n"
        + b"%x;ext=1\r\n" % len(second)
        + second
        + b"\r\n0\r\n\r\n"
    )
    assert response_end(chunked) == (200, len(chunked))
    for cut in range(len(chunked)):
        assert response_end(chunked[:cut]) is None, cut
    empty = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
    assert response_end(empty) == (503, len(empty))
    no_body = b"HTTP/1.1 204 No Content\r\nserver: envoy\r\n\r\n"
    assert response_end(no_body + b"HTTP/1.1 200") == (204, len(no_body))


def test_wrk_latency_output_is_read():
    output = """Running 1s test @ http://127.0.0.1:18080/v1/chat/completions
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.38ms    5.21ms  31.73ms   66.02%
    Req/Sec   434.80    167.36   800.00     80.00%
  Latency Distribution
     50%    8.17ms
     75%   12.30ms
     90%   16.92ms
     99%   23.88ms
  435 requests in 1.01s, 276.18KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:    432.43
"""
    load = parse_wrk(output)
    assert (load.requests, load.errors, load.elapsed) == (430, 8, 1.01)
    assert (load.p50_s, load.p99_s) == (pytest.approx(8.17e-3), pytest.approx(23.88e-3))
    assert parse_wrk(output.replace("8.17ms", "870.00us")).p50_s == pytest.approx(870e-6)
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


@contextmanager
def http_server(answer: bytes | None, close_after_answer: bool = False):
    """A loopback server that reads each request (headers + content-length body) and sends `answer`, closing the
    connection after it if asked; with `answer` None it reads and never answers."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                length = 0
                line = self.rfile.readline()
                if not line:
                    return
                while line not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = self.rfile.readline()
                self.rfile.read(length)
                if answer is None:
                    self.rfile.read()  # wait for the client to give up
                    return
                self.wfile.write(answer)
                if close_after_answer:
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()


def test_the_python_generator_counts_answers_and_statuses_and_reconnects_after_a_close():
    requests = [("a.bench", b'{"n": 1}'), ("b.bench", b'{"n": 2}')]
    with http_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") as address:
        load = python_load(address, requests, concurrency=2, duration=0.3)
    assert load.generator == "python" and load.requests > 10 and load.errors == 0
    assert 0 < load.p50_s <= load.p99_s and load.cpu_s > 0
    with http_server(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n") as address:
        load = python_load(address, requests, concurrency=1, duration=0.2)
    assert load.requests == 0 and load.errors > 10
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    with http_server(closing, close_after_answer=True) as address:
        load = python_load(address, requests, concurrency=2, duration=0.3)
    assert load.requests > 4 and load.errors > 0  # every close is counted, and the client connects again


def test_the_python_generator_gives_up_on_a_gateway_that_stops_answering(monkeypatch):
    monkeypatch.setattr(overhead, "ANSWER_TIMEOUT", 0.5)
    with http_server(None) as address, pytest.raises(RuntimeError, match="stopped answering"):
        python_load(address, [("a.bench", b"{}")], concurrency=1, duration=0.1)
