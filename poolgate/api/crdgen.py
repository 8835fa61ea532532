"""The CustomResourceDefinitions (apiextensions.k8s.io/v1) poolgate installs, generated from its API models:
InferencePool (inference.networking.k8s.io/v1), InferenceObjective and InferenceModelRewrite (v1alpha2 in both
inference.networking.x-k8s.io and llm-d.ai). Regenerate the files in crds/ with
`python -m poolgate.api.crdgen --out crds/`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from poolgate.api.base import KubeObject
from poolgate.api.inference import InferenceModelRewrite, InferenceObjective, InferencePool

COMMAND = "python -m poolgate.api.crdgen --out crds/"
# JSON-schema keywords a structural schema may carry, besides the x-kubernetes-* extensions.
STRUCTURAL_KEYWORDS = {
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
}
# Keywords of the models' schemas that a structural schema cannot express; poolgate checks them in Python.
PYTHON_ONLY = {"title", "description", "propertyNames"}
AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
POOL_COLUMN = {"name": "Inference Pool", "type": "string", "jsonPath": ".spec.poolRef.name"}


@dataclass(frozen=True)
class CrdSpec:
    """How one kind is served: its model, API group and version, names and `kubectl get` columns."""

    model: type[KubeObject]
    group: str
    version: str
    plural: str
    short_names: tuple[str, ...] = ()
    columns: tuple[dict, ...] = (AGE,)
    annotations: dict[str, str] = field(default_factory=dict)
    # Fields the model requires but the upstream CRD leaves optional, as dotted paths ("spec.rules.targets", list
    # items transparent): the API server stores such objects, as upstream does; poolgate refuses them on reading.
    optional: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.model.model_fields["kind"].default


CRDS = (
    CrdSpec(
        InferencePool,
        "inference.networking.k8s.io",
        "v1",
        "inferencepools",
        short_names=("infpool",),
        columns=(
            {"name": "Picker", "type": "string", "jsonPath": ".spec.endpointPickerRef.name"},
            {"name": "Ports", "type": "string", "jsonPath": ".spec.targetPorts[*].number"},
            {"name": "Protocol", "type": "string", "jsonPath": ".spec.appProtocol", "priority": 1},
            AGE,
        ),
        # The group is protected (*.k8s.io); this is the approval of the upstream API.
        annotations={
            "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api-inference-extension/pull/1173"
        },
    ),
    *(
        CrdSpec(
            InferenceObjective,
            group,
            "v1alpha2",
            "inferenceobjectives",
            optional=("spec",),
            columns=(POOL_COLUMN, {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"}, AGE),
        )
        for group in ("inference.networking.x-k8s.io", "llm-d.ai")
    ),
    *(
        CrdSpec(
            InferenceModelRewrite,
            group,
            "v1alpha2",
            "inferencemodelrewrites",
            optional=("spec", "spec.rules.targets"),
            columns=(POOL_COLUMN, AGE),
        )
        for group in ("inference.networking.x-k8s.io", "llm-d.ai")
    ),
)


def crd(spec: CrdSpec) -> dict:
    """The CustomResourceDefinition of one kind in one API group."""
    model_schema = spec.model.model_json_schema(by_alias=True, mode="validation")
    defs = model_schema.get("$defs", {})
    properties = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    for name in ("spec", "status"):
        properties[name] = structural(model_schema["properties"][name], defs)
    required = [name for name in model_schema.get("required", ()) if name in ("spec", "status")]
    root = {"type": "object", "properties": properties, "required": required}
    for path in spec.optional:
        make_optional(root, path)
    singular = spec.kind.lower()
    names: dict[str, Any] = {
        "kind": spec.kind,
        "listKind": f"{spec.kind}List",
        "plural": spec.plural,
        "singular": singular,
    }
    if spec.short_names:
        names["shortNames"] = list(spec.short_names)
    metadata: dict[str, Any] = {"name": f"{spec.plural}.{spec.group}"}
    if spec.annotations:
        metadata["annotations"] = dict(spec.annotations)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": spec.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": spec.version,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [dict(c) for c in spec.columns],
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def structural(schema: dict, defs: dict) -> dict:
    """A pydantic JSON schema turned structural: $refs inlined, `X | None` as plain X, no null defaults, `const` as a
    one-value enum, titles and descriptions dropped. Raises ValueError on anything a CRD cannot say."""
    if "$ref" in schema:
        target = defs[schema["$ref"].removeprefix("#/$defs/")]
        return structural({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"a CRD cannot express a union: {schema['anyOf']}")
        return structural({**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}}, defs)
    out: dict = {}
    for key, value in schema.items():
        if key in PYTHON_ONLY or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "default":
            out[key] = without_nulls(value)
        elif key in STRUCTURAL_KEYWORDS or key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            raise ValueError(f"a structural schema cannot carry {key!r}: {schema}")
    if "type" not in out:
        raise ValueError(f"a structural schema needs a type: {schema}")
    return out


def make_optional(schema: dict, path: str) -> None:
    """Drop the field at a dotted path (list items transparent) from its object's `required`."""
    *parents, name = path.split(".")
    for part in parents:
        schema = schema["properties"][part]
        while schema.get("type") == "array":
            schema = schema["items"]
    schema["required"].remove(name)
    if not schema["required"]:
        del schema["required"]


def without_nulls(value: object) -> object:
    """A default value with its unset (None) fields left out, as Kubernetes would store it."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def filename(definition: dict) -> str:
    """The file a CRD is written to, named like upstream: <group>_<plural>.yaml."""
    return f"{definition['spec']['group']}_{definition['spec']['names']['plural']}.yaml"


def render(definition: dict) -> str:
    """A CRD as YAML, with a header that says how it was made."""
    header = f"# Generated from poolgate's API models (poolgate/api/) by `{COMMAND}`. Do not edit.\n"
    return header + yaml.dump(definition, Dumper=_NoAliasDumper, sort_keys=True, width=120)


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def generate() -> dict[str, str]:
    """File name -> YAML text of every CRD poolgate installs."""
    definitions = [crd(spec) for spec in CRDS]
    return {filename(d): render(d) for d in definitions}


def main(argv: list[str] | None = None) -> int:
    """Print the CRDs, or write them into a directory (one file per CRD)."""
    parser = argparse.ArgumentParser(prog="python -m poolgate.api.crdgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="directory to write the CRD files into (default: print them)")
    args = parser.parse_args(argv)
    files = generate()
    if args.out is None:
        sys.stdout.write("---\n".join(files.values()))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
