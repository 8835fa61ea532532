"""The README's main job as a user runs it (`poolgate up -f examples/quickstart.yaml`, then examples/chat.py), and
edits applied while running."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import yaml

from poolgate.api import InvalidObjects
from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, route, service, sim_deployment
from poolgate.up.processes import POOLGATE, port_open, wait_until
from tests.conftest import REPO

pytestmark = pytest.mark.xdist_group("e2e-quickstart")


def test_quickstart_answers_the_openai_client_and_stops_cleanly(tmp_path):
    up = subprocess.Popen(
        [*POOLGATE, "up", "-f", "examples/quickstart.yaml", "--state-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = up.stdout.readline()  # printed once everything is up
        match = re.match(r"Gateway default/inference-gateway: (http://[\d.]+:\d+)$", line.strip())
        assert match, line + up.stderr.read() if up.poll() is not None else line
        url = match.group(1)
        for model in ("meta-llama/Llama-3.1-8B-Instruct", "food-review", "Qwen/Qwen3-8B"):
            result = subprocess.run(
                [sys.executable, "examples/chat.py", "--url", f"{url}/v1", "--model", model],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            assert f"model:     {model}" in result.stdout and "served by: 127.0.0." in result.stdout
        objects = yaml.safe_load((tmp_path / "objects.yaml").read_text())["items"]
        addresses = [(o["status"]["podIP"], 8000) for o in objects if o["kind"] == "Pod"]
        assert len(addresses) == 5 and all(port_open(*a) for a in addresses)
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.wait(30) == 0
    host, port = url.removeprefix("http://").split(":")
    for address in [*addresses, (host, int(port))]:
        assert not port_open(*address), f"{address} still answers after poolgate up stopped"


def test_edits_apply_while_running_and_bad_edits_keep_the_last_good_config(start_stack, http, tmp_path):
    stack = start_stack(
        gateway_class(), gateway(listeners=listener()), route(), pool(), service(), sim_deployment("pool", replicas=2)
    )
    path = stack.stack.files[0]
    envoy = stack.child("envoy").popen.pid
    objects = list(yaml.safe_load_all(path.read_text()))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 3
    route_obj = next(o for o in objects if o["kind"] == "HTTPRoute")
    route_obj["spec"]["rules"][0]["matches"] = [{"headers": [{"name": "x-tenant", "value": "blue"}]}]
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    stack.stack.reload()
    endpoints = stack.endpoints("pool")
    assert len(endpoints) == 3
    blue = {"x-tenant": "blue"}
    wait_until(
        lambda: (
            http.post(
                f"{stack.url()}/v1/chat/completions",
                json=chat(),
                headers={**blue, "test-epp-endpoint-selection": endpoints[2]},
            ).status_code
            == 200
        ),
        timeout=10,
        message="the edited route and the new pod serving",
    )
    assert http.post(f"{stack.url()}/v1/chat/completions", json=chat()).status_code == 404
    assert stack.child("envoy").popen.pid == envoy  # reloaded in place, not restarted
    path.write_text(path.read_text().replace("replicas: 3", "replicas: -1"))
    with pytest.raises(InvalidObjects, match=r"spec\.replicas"):
        stack.stack.reload()
    assert http.post(f"{stack.url()}/v1/chat/completions", json=chat(), headers=blue).status_code == 200
    assert len(stack.endpoints("pool")) == 3
