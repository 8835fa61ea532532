"""Loading objects: valid ones become typed models, invalid ones give problems naming the object and field."""

from __future__ import annotations

import pytest

from poolgate.api import InvalidObjects, load_files, parse_object
from poolgate.api.gateway import HTTPRoute
from poolgate.api.inference import InferencePool


def pool_dict(**spec) -> dict:
    base = {"selector": {"matchLabels": {"app": "x"}}, "targetPorts": [{"number": 8000}]}
    base.update(spec)
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": base,
    }


def problems_of(raw: dict) -> list[tuple[str, str, str]]:
    with pytest.raises(InvalidObjects) as error:
        parse_object(raw, "t")
    return [(p.object, p.field, p.message) for p in error.value.problems]


def test_pool_defaults():
    pool = parse_object(pool_dict(endpointPickerRef={"name": "epp", "port": {"number": 9002}}))
    assert isinstance(pool, InferencePool)
    assert pool.spec.app_protocol == "http"
    assert pool.spec.endpoint_picker_ref.failure_mode == "FailClose"
    assert pool.spec.endpoint_picker_ref.kind == "Service" and pool.spec.endpoint_picker_ref.group == ""


@pytest.mark.parametrize(
    "spec, field, fragment",
    [
        ({"targetPorts": [{"number": 8000}, {"number": 8000}]}, "spec", "port number must be unique"),
        ({"targetPorts": []}, "spec.targetPorts", "at least 1"),
        ({"targetPorts": [{"number": p} for p in range(8000, 8009)]}, "spec.targetPorts", "at most 8"),
        ({"targetPorts": [{"number": 70000}]}, "spec.targetPorts[0].number", "less than or equal to 65535"),
        ({"endpointPickerRef": {"name": "epp"}}, "spec.endpointPickerRef", "port is required when kind is 'Service'"),
        (
            {"endpointPickerRef": {"name": "epp", "port": {"number": 1}, "failureMode": "Sometimes"}},
            "spec.endpointPickerRef.failureMode",
            "'FailOpen' or 'FailClose'",
        ),
        ({"appProtocol": "grpc"}, "spec.appProtocol", "'http' or 'kubernetes.io/h2c'"),
        ({"selector": {"matchLabels": {}}}, "spec.selector.matchLabels", "at least 1"),
    ],
)
def test_pool_validation_names_the_field(spec, field, fragment):
    found = problems_of(pool_dict(**spec))
    assert any(obj == "InferencePool ns/p" and f == field and fragment in msg for obj, f, msg in found), found


def test_route_problems_are_all_reported_with_paths():
    raw = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "svc"},
                        {
                            "name": "p",
                            "weight": 2_000_000,
                            "group": "inference.networking.k8s.io",
                            "kind": "InferencePool",
                        },
                    ],
                    "matches": [{"path": {"type": "PathPrefix", "value": "no-slash"}}],
                }
            ]
        },
    }
    found = problems_of(raw)
    fields = {f for _, f, _ in found}
    assert "spec.rules[0].backendRefs[0]" in fields  # Service without port
    assert "spec.rules[0].backendRefs[1].weight" in fields
    assert "spec.rules[0].matches[0].path" in fields


def test_route_defaults_match_everything():
    route = parse_object(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r"},
            "spec": {"parentRefs": [{"name": "gw"}]},
        }
    )
    assert isinstance(route, HTTPRoute)
    assert route.spec.rules[0].matches[0].path.type == "PathPrefix" and route.spec.rules[0].matches[0].path.value == "/"
    assert (
        route.spec.parent_refs[0].group == "gateway.networking.k8s.io" and route.spec.parent_refs[0].kind == "Gateway"
    )


def test_legacy_pool_version_is_refused_with_a_hint():
    raw = pool_dict()
    raw["apiVersion"] = "inference.networking.x-k8s.io/v1alpha2"
    [(_obj, field, message)] = problems_of(raw)
    assert field == "apiVersion" and "no longer served" in message


def test_objective_in_both_groups():
    for group in ("inference.networking.x-k8s.io", "llm-d.ai"):
        obj = parse_object(
            {
                "apiVersion": f"{group}/v1alpha2",
                "kind": "InferenceObjective",
                "metadata": {"name": "o"},
                "spec": {"priority": -1, "poolRef": {"name": "p"}},
            }
        )
        assert obj.spec.priority == -1 and obj.spec.pool_ref.group == "inference.networking.k8s.io"


def test_rewrite_weights_all_or_none():
    raw = {
        "apiVersion": "llm-d.ai/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "rw"},
        "spec": {
            "poolRef": {"name": "p"},
            "rules": [{"targets": [{"modelRewrite": "a", "weight": 90}, {"modelRewrite": "b"}]}],
        },
    }
    [(_, field, message)] = problems_of(raw)
    assert field == "spec.rules[0]" and "weight must be set on all targets or on none" in message


def test_unknown_kinds_are_ignored_and_non_objects_rejected():
    assert parse_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}) is None
    with pytest.raises(InvalidObjects, match="expected a mapping"):
        parse_object(["not", "an", "object"])


def test_files_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Gateway\nmetadata: {name: [unclosed\n")
    with pytest.raises(InvalidObjects) as error:
        load_files([path])
    assert "invalid YAML: line" in str(error.value) and str(path) in str(error.value)


def test_files_list_kind_and_every_problem(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text("""
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{port: 0}]}
- apiVersion: v1
  kind: Service
  metadata: {name: b}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g}
spec: {gatewayClassName: c, listeners: []}
""")
    with pytest.raises(InvalidObjects) as error:
        load_files([path])
    text = [str(p) for p in error.value.problems]
    assert any("#1.1: Service default/a: spec.ports[0].port" in t for t in text), text
    assert any("#2: Gateway default/g: spec.listeners" in t for t in text), text
    assert len(text) == 2
