"""`poolgate hooks` for real: gunicorn on loopback, called over HTTP, then stopped with nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.hooks.golden import FIXTURES, expected_file
from tests.hooks.test_envoy_runtime import free_port, wait_for


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_poolgate_hooks_serves_every_hook_with_gunicorn_and_stops_cleanly(tmp_path):
    port = free_port()
    settings = tmp_path / "settings.yaml"
    settings.write_text("envoyImage: registry.example/envoy:v1.40.0\n")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poolgate.cli",
            "hooks",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--settings",
            str(settings),
            "--max-request-bytes",
            "1048576",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _healthy(base), timeout_s=30)
        assert server.poll() is None, server.stderr.read().decode()

        case = "gateways/sync/two-gateways-a"
        status, body = call(f"{base}/gateways/sync", (FIXTURES / f"{case}.json").read_bytes())
        expected = json.loads(expected_file(case).read_text())["body"]
        assert status == 200 and body["status"] == expected["status"]
        deployment = next(a for a in body["attachments"] if a["kind"] == "Deployment")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/envoy:v1.40.0"

        case = "httproutes/sync/weighted-pools"
        assert call(f"{base}/httproutes/sync", (FIXTURES / f"{case}.json").read_bytes()) == (
            200,
            json.loads(expected_file(case).read_text())["body"],
        )
        assert call(f"{base}/inferencepools/sync", b"{")[0] == 400
        assert call(f"{base}/inferencepools/sync", b"[" + b"0," * 1_000_000 + b"0]")[0] == 413
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_alive(server.pid):
        time.sleep(0.05)
    assert not _group_alive(server.pid), "a gunicorn process outlived the server"
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("msg") == "request"]
    assert {(r["path"], r["status"]) for r in requests} >= {
        ("/gateways/sync", 200),
        ("/httproutes/sync", 200),
        ("/inferencepools/sync", 400),
        ("/inferencepools/sync", 413),
    }
    assert any(line["logger"] == "gunicorn.error" for line in lines)


def _healthy(base: str) -> bool:
    try:
        return call(f"{base}/healthz") == (200, {"status": "ok"})
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
