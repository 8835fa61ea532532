"""Hostile and broken requests through Envoy: each gets a clear 4xx quickly, nothing hangs, and a steady background
load of ordinary requests never notices.

Who answers what (docs/reliability.md): the picker answers everything about the body with OpenAI-style JSON (400
invalid JSON / UTF-8 / nesting / `model`, 404 unknown model, 413 too large); Envoy answers HTTP protocol violations
itself (400 or 431 as OpenAI-style JSON, connection closed; a broken chunked body just closes the connection) and requests
that arrive too slowly (408)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson
import pytest

from poolgate.api.builders import MODEL, chat, pool_ref, sim_deployment
from poolgate.load import faults
from poolgate.load.generator import Load, summarize
from poolgate.up.stack import Stack
from tests.support.stacks import running_stack

pytestmark = pytest.mark.xdist_group("reliability-hostile")
REQUEST_TIMEOUT_S = 2.0  # short, so that slow clients are cut off within the test
HEADERS_TIMEOUT_S = 1.0


class Gateway:
    """One stack for the module, with a steady background load that every test checks is unaffected."""

    def __init__(self, stack: Stack, load: Load):
        self.stack = stack
        self.load = load
        self.url = faults.gateway_url(stack)
        host, port = self.url.removeprefix("http://").split(":")
        self.address = (host, int(port))

    def background_since(self, started: float) -> dict:
        """The background requests started since `started` (load clock): they must all have succeeded."""
        time.sleep(0.3)
        outcomes = [o for o in list(self.load.outcomes) if o.started >= started]
        summary = summarize(outcomes)
        summary["failures"] = [o for o in outcomes if not o.ok][:5]
        return summary

    def assert_unaffected(self, started: float) -> None:
        summary = self.background_since(started)
        assert summary["requests"] >= 3 and summary["failed"] == 0, summary["failures"]
        for name in ("envoy", "picker/default/epp"):
            assert self.stack.supervisor.children[name].running, f"{name} died"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    objects = [
        *faults.gateway_objects([{"backendRefs": [pool_ref("pool")]}]),
        *faults.pool_objects(),
        sim_deployment("pool", 2),
    ]
    objects[3]["metadata"]["annotations"] = {"poolgate.dev/models": MODEL}  # the pool serves one model
    timeouts = {"request_timeout_s": REQUEST_TIMEOUT_S, "request_headers_timeout_s": HEADERS_TIMEOUT_S}
    with running_stack(tmp_path_factory.mktemp("hostile"), *objects, translate=timeouts) as running:
        url = f"{running.url()}/v1/chat/completions"
        with Load(url, 20, lambda i: chat(content=f"background {i}"), timeout=5.0) as load:
            yield Gateway(running.stack, load)


def post(gateway: Gateway, body: bytes, path: str = "/v1/chat/completions") -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(gateway.url + path, content=body, headers={"content-type": "application/json"}, timeout=30)
    return response, time.monotonic() - started


BAD_BODIES = {
    "invalid JSON": (b'{"model": ', 400, None),
    "not an object": (b'[{"model": "x"}]', 400, None),
    "missing model": (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "model"),
    "null model": (b'{"model": null, "messages": []}', 400, "model"),
    "empty model": (b'{"model": "", "messages": []}', 400, "model"),
    "number model": (b'{"model": 42, "messages": []}', 400, "model"),
    "list model": (b'{"model": ["a"], "messages": []}', 400, "model"),
    "control characters in model": (b'{"model": "llama\\u0000\\n", "messages": []}', 400, "model"),
    "unknown model": (b'{"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]}', 404, "model"),
    "invalid UTF-8": (b'{"model": "\xff\xfe\xfd", "messages": []}', 400, None),
    "lone surrogate": (b'{"model": "\\ud800", "messages": []}', 400, None),
    "nested 100,000 deep": (b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, None),
    "huge number": (b'{"model": "m", "n": 1' + b"0" * 5000 + b"}", 400, None),
    "11 MiB body": (b'{"model": "m", "x": "' + b"a" * (11 * 2**20) + b'"}', 413, None),
    "40 MiB body": (b'{"model": "m", "x": "' + b"a" * (40 * 2**20) + b'"}', 413, None),
}


def test_broken_bodies_get_openai_style_4xx_from_the_picker_at_once(gateway):
    started = gateway.load.now()
    for name, (body, status, param) in BAD_BODIES.items():
        response, elapsed = post(gateway, body)
        assert response.status_code == status, (name, response.text[:300])
        assert response.headers["content-type"] == "application/json", name
        error = response.json()["error"]
        assert error["code"] == status and error["type"] and error["message"], (name, error)
        assert error["param"] == param, (name, error)
        assert elapsed < 5.0, (
            name,
            elapsed,
        )  # answered, not left to a timeout (a 40 MiB upload takes ~1-2 s on a loaded 2-core machine)
    gateway.assert_unaffected(started)


def raw_exchange(address: tuple[str, int], data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send raw bytes on a new connection and read until the server closes it: (what came back, seconds)."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received, time.monotonic() - started


POST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
PROTOCOL_VIOLATIONS = {
    "conflicting content-length": (POST + b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{", b"400"),
    "content-length with chunked": (POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
    "invalid header name": (POST.replace(b"Host", b"Ho st") + b"\r\n", b"400"),
    "NUL in a header value": (POST + b"X-Tenant: a\x00b\r\nContent-Length: 2\r\n\r\n{}", b"400"),
    "not HTTP": (b"HELLO THERE\r\n\r\n", b"400"),
    "100 KB header": (POST + b"X-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n{}", b"431"),
    "broken chunked body": (POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", b""),  # closed, no answer
}


def test_protocol_violations_get_envoys_own_4xx_or_a_closed_connection(gateway):
    started = gateway.load.now()
    for name, (data, status) in PROTOCOL_VIOLATIONS.items():
        received, elapsed = raw_exchange(gateway.address, data)
        if status:
            assert received.startswith(b"HTTP/1.1 " + status), (name, received[:200])
            head, _, body = received.partition(b"\r\n\r\n")
            assert b"content-type: application/json" in head.lower(), (name, received[:300])
            assert orjson.loads(body)["error"]["code"] in ("invalid_request", "request_headers_too_large"), name
        else:
            assert received == b"", (name, received[:200])
        assert elapsed < 3.0, (name, elapsed)  # closed by Envoy, not by the client giving up
    gateway.assert_unaffected(started)


def trickle(address: tuple[str, int], head: bytes, body: bytes, every: float, results: list) -> None:
    """Send the head, then the body one byte every `every` seconds until the server answers or closes."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(every)
        received = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                received = sock.recv(65536)
                if received or time.monotonic() - started > 10:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        results.append((received, time.monotonic() - started))


def test_slow_clients_are_cut_off_with_408_and_do_not_tie_up_the_picker(gateway):
    started = gateway.load.now()
    body = orjson.dumps(chat(content="slow " * 200))
    results: list = []
    body_lorises = [
        threading.Thread(
            target=trickle,
            args=(
                gateway.address,
                POST + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body),
                body,
                0.2,
                results,
            ),
        )
        for _ in range(20)
    ]
    header_lorises = [
        threading.Thread(
            target=trickle,
            args=(gateway.address, b"POST /v1/chat/completions HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200, 0.2, results),
        )
        for _ in range(5)
    ]
    for thread in body_lorises + header_lorises:
        thread.start()
    for thread in body_lorises + header_lorises:
        thread.join(15)
    assert len(results) == 25
    for received, elapsed in results:
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
        assert elapsed < REQUEST_TIMEOUT_S + 2.0, elapsed
    summary = gateway.background_since(started)
    assert summary["failed"] == 0 and summary["requests"] >= 40, summary
    assert summary["p99_ms"] < 1000, summary  # ordinary requests kept flowing meanwhile
    gateway.assert_unaffected(started)
