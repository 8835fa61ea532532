"""`poolgate translate` as a user runs it: files in, Envoy configuration and status out, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poolgate.cli", "translate", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_translate_writes_a_bootstrap_envoy_accepts(tmp_path):
    result = run("-f", "examples/weighted-pools.yaml", "--out", str(tmp_path), "--validate")
    assert result.returncode == 0, result.stderr
    assert "envoy --mode validate: OK" in result.stderr
    assert (tmp_path / "bootstrap.yaml").is_file() and (tmp_path / "xds" / "lds.yaml").is_file()


def test_status_lists_every_object_kind():
    result = run("-f", "examples/weighted-pools.yaml", "--status")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    kinds = sorted({s["kind"] for s in status})
    assert kinds == ["Gateway", "GatewayClass", "HTTPRoute", "InferencePool"]
    assert all(set(s) == {"apiVersion", "kind", "metadata", "status"} for s in status)


def test_status_resolves_managed_pickers_as_poolgate_up_and_the_hooks_do():
    result = run("-f", "examples/quickstart.yaml", "--status")
    assert result.returncode == 0, result.stderr
    pools = [s for s in json.loads(result.stdout) if s["kind"] == "InferencePool"]
    assert sorted(p["metadata"]["name"] for p in pools) == ["llama", "qwen"]  # both with managed pickers
    for pool in pools:
        conditions = {c["type"]: c for c in pool["status"]["parents"][0]["conditions"]}
        assert conditions["ResolvedRefs"]["status"] == "True", conditions["ResolvedRefs"]


def test_bad_input_exits_nonzero_naming_object_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: broken, namespace: ml}
spec: {selector: {matchLabels: {app: x}}, targetPorts: [{number: 99999}]}
""")
    result = run("-f", str(bad))
    assert result.returncode == 1
    assert "InferencePool ml/broken: spec.targetPorts[0].number" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n")
    result = run("-f", str(bad), "-f", str(tmp_path / "missing.yaml"))
    assert result.returncode == 1
    assert "invalid YAML" in result.stderr and "missing.yaml" in result.stderr
    assert "Traceback" not in result.stderr
