"""The CRDs generated from poolgate's models: crds/ is what the generator writes now, each CRD is a valid structural
CustomResourceDefinition, and its schema says what the upstream CRD's schema says (descriptions aside)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from poolgate.api.crdgen import COMMAND, CRDS, crd, filename, generate, main, structural
from tests.api.crdcheck import FORMATS, read_crd

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
UPSTREAM_DIRS = {
    "inference.networking.k8s.io": "gateway-api-inference-extension",
    "inference.networking.x-k8s.io": "llm-d-router",
    "llm-d.ai": "llm-d-router",
}
NOT_STRUCTURAL = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const", "title", "nullable"}


def spec_id(spec) -> str:
    return f"{spec.group}/{spec.kind}"


def test_crds_directory_is_what_the_generator_writes():
    on_disk = {path.name: path.read_text() for path in CRDS_DIR.glob("*.yaml")}
    assert on_disk == generate(), f"crds/ is stale: run `{COMMAND}`"


def schema_facts(schema: dict, path: str = "") -> dict[tuple[str, str], object]:
    """(path, keyword) -> value for every keyword of a schema but descriptions; `minLength: 0` counts as absent."""
    out = {}
    for key, value in schema.items():
        if key == "properties":
            for name, sub in value.items():
                out.update(schema_facts(sub, f"{path}.{name}"))
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out.update(schema_facts(value, path + ("[]" if key == "items" else "{}")))
        elif key == "required":
            out[path, key] = sorted(value)
        elif key != "description" and (key, value) != ("minLength", 0):
            out[path, key] = value
    return out


@pytest.mark.parametrize("spec", CRDS, ids=spec_id)
def test_generated_schema_is_the_upstream_schema(reference_crds, spec):
    ours = crd(spec)
    upstream = read_crd(reference_crds / UPSTREAM_DIRS[spec.group] / filename(ours))
    [ours_version], [upstream_version] = ours["spec"]["versions"], upstream["spec"]["versions"]
    schema, upstream_schema = (v["schema"]["openAPIV3Schema"] for v in (ours_version, upstream_version))
    assert schema_facts(schema) == schema_facts(upstream_schema)
    assert ours["metadata"]["name"] == upstream["metadata"]["name"]
    for key in ("group", "names", "scope"):
        assert ours["spec"][key] == upstream["spec"][key], key
    for key in ("name", "served", "storage", "subresources"):
        assert ours_version[key] == upstream_version[key], key


def structural_problems(schema: dict, path: str = "<root>") -> list[str]:
    """Why a schema is not structural (Kubernetes' rules that matter here), or [] when it is."""
    problems = [f"{path}: {key} is not allowed" for key in schema if key in NOT_STRUCTURAL]
    if "type" not in schema:
        problems.append(f"{path}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    if "default" in schema:
        problems += [
            f"{path}: default {e.message}"
            for e in jsonschema.Draft7Validator(schema, format_checker=FORMATS).iter_errors(schema["default"])
        ]
    if schema.get("x-kubernetes-list-type") == "map":
        item = schema["items"]
        problems += [
            f"{path}: list-map key {key} is neither required nor defaulted"
            for key in schema["x-kubernetes-list-map-keys"]
            if key not in item.get("required", ()) and "default" not in item["properties"][key]
        ]
    for name, sub in schema.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += structural_problems(schema[key], f"{path}.{key}")
    return problems


@pytest.mark.parametrize("spec", CRDS, ids=spec_id)
def test_generated_crds_are_structural_and_valid(spec):
    definition = crd(spec)
    kubernetes_validate.validate(definition, kubernetes_validate.latest_version(), strict=True)
    assert structural_problems(definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) == []


def test_structural_problems_are_found():
    bad = {
        "type": "object",
        "properties": {"a": {"anyOf": [{"type": "string"}]}, "b": {"type": "integer", "default": "x"}},
    }
    assert structural_problems(bad) == [
        "<root>.a: anyOf is not allowed",
        "<root>.a: no type",
        "<root>.b: default 'x' is not of type 'integer'",
    ]


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, "cannot express a union"),
        ({"type": "string", "oneOf": [{"pattern": "a"}]}, "cannot carry 'oneOf'"),
        ({"properties": {"a": {"type": "string"}}}, "needs a type"),
    ],
)
def test_generator_refuses_what_a_crd_cannot_say(schema, message):
    with pytest.raises(ValueError, match=message):
        structural(schema, {})


def test_structural_conversion():
    defs = {
        "Port": {
            "title": "Port",
            "type": "object",
            "properties": {"number": {"type": "integer", "title": "N"}},
            "required": ["number"],
        }
    }
    schema = {
        "type": "object",
        "properties": {
            "port": {"anyOf": [{"$ref": "#/$defs/Port"}, {"type": "null"}], "default": None},
            "type": {"const": "Exact", "default": "Exact", "type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"minLength": 1}},
        },
    }
    assert structural(schema, defs) == {
        "type": "object",
        "properties": {
            "port": {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
            "type": {"enum": ["Exact"], "default": "Exact", "type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def test_cli_writes_and_prints(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "crds")]) == 0
    assert {p.name: p.read_text() for p in (tmp_path / "crds").iterdir()} == generate()
    capsys.readouterr()
    assert main([]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in printed] == [crd(spec)["metadata"]["name"] for spec in CRDS]
    assert all(
        text.startswith(f"# Generated from poolgate's API models (poolgate/api/) by `{COMMAND}`")
        for text in generate().values()
    )
