"""`poolgate translate --target envoy-gateway` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import REPO
from tests.envoy_gateway.cases import two_pools


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poolgate.cli", "translate", "--target", "envoy-gateway", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def write_inputs(tmp_path) -> str:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all([o.to_json() for o in two_pools()]))
    return str(path)


def test_prints_the_resources_as_multi_document_yaml_in_a_stable_order(tmp_path):
    first, second = run("-f", write_inputs(tmp_path)), run("-f", write_inputs(tmp_path))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and "&id" not in first.stdout  # no YAML aliases for kubectl to puzzle over
    documents = list(yaml.safe_load_all(first.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Service", "llama-poolgate"),
        ("Service", "qwen-poolgate"),
        ("Backend", "models-llama-epp-default-poolgate"),
        ("Backend", "models-qwen-epp-default-poolgate"),
        ("Gateway", "gw-poolgate"),
        ("HTTPRoute", "models-poolgate"),
        ("ClientTrafficPolicy", "gw-poolgate"),
        ("BackendTrafficPolicy", "models-poolgate-llama"),
        ("BackendTrafficPolicy", "models-poolgate-qwen"),
        ("EnvoyExtensionPolicy", "models-poolgate-llama"),
        ("EnvoyExtensionPolicy", "models-poolgate-qwen"),
        ("EnvoyPatchPolicy", "gw-poolgate"),
    ]


def test_writes_the_file_or_prints_the_status(tmp_path):
    result = run("-f", write_inputs(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0 and result.stdout == ""
    assert len(list(yaml.safe_load_all((tmp_path / "out" / "envoy-gateway.yaml").read_text()))) == 12
    status = json.loads(run("-f", write_inputs(tmp_path), "--status").stdout)
    assert {(s["kind"], p["controllerName"]) for s in status for p in s["status"]["parents"]} == {
        ("HTTPRoute", "poolgate.dev/envoy-gateway"),
        ("InferencePool", "poolgate.dev/envoy-gateway"),
    }


def test_bad_input_exits_1_naming_object_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: broken, namespace: ml}
spec: {selector: {matchLabels: {app: x}}, targetPorts: [{number: 0}]}
""")
    result = run("-f", str(bad))
    assert result.returncode == 1
    assert "InferencePool ml/broken: spec.targetPorts[0].number" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_validate_is_refused_and_a_missing_envoy_gateway_is_reported(tmp_path):
    result = run("-f", write_inputs(tmp_path), "--validate")
    assert result.returncode == 2 and "--target envoy" in result.stderr
    none = tmp_path / "none.yaml"
    none.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n")
    result = run("-f", str(none))
    assert result.returncode == 0 and result.stdout == ""
    assert "warning: no Gateway of a class with controllerName gateway.envoyproxy.io" in result.stderr


def test_picker_plaintext_calls_the_pickers_services_directly(tmp_path):
    result = run("-f", write_inputs(tmp_path), "--picker-plaintext")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert "Backend" not in {d["kind"] for d in documents}
    refs = [d["spec"]["extProc"][0]["backendRefs"] for d in documents if d["kind"] == "EnvoyExtensionPolicy"]
    assert refs == [[{"name": "llama-epp", "port": 9002}], [{"name": "qwen-epp", "port": 9002}]]


def test_at_user_gateway_attaches_the_companions_to_the_users_gateway_and_refuses_model_routing(tmp_path):
    result = run("-f", write_inputs(tmp_path), "--at-user-gateway")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert {"Gateway", "ClientTrafficPolicy"}.isdisjoint(d["kind"] for d in documents)
    (companion,) = [d for d in documents if d["kind"] == "HTTPRoute"]
    assert [p["name"] for p in companion["spec"]["parentRefs"]] == ["gw"]
    refused = run("-f", write_inputs(tmp_path), "--at-user-gateway", "--model-router-service", "default/mr:9004")
    assert refused.returncode == 2 and "needs the sibling Gateway" in refused.stderr and refused.stdout == ""
