"""Judge objects the way the Kubernetes API server judges custom resources against a CRD: prune nulls, apply the
schema's defaults, validate with JSON Schema (formats included), enforce `x-kubernetes-list-type` set/map uniqueness
and evaluate the CEL rules (`x-kubernetes-validations`, with cel-python). Used by the CRD parity tests."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

import celpy
import jsonschema
import yaml
from celpy import celtypes

# Property names that Kubernetes escapes as __name__ when a CEL rule reads them (CEL reserved words).
CEL_RESERVED = {
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
}
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = jsonschema.FormatChecker(formats=("ipv4", "ipv6"))


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        if not RFC3339.match(value):
            return False
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


_CEL = celpy.Environment()
_PROGRAMS: dict[str, celpy.Runner] = {}


def read_crd(path: Path) -> dict:
    """The CustomResourceDefinition in a YAML file."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def cel_rules(schema: dict) -> Iterator[str]:
    """Every CEL rule in a schema, depth first."""
    for rule in schema.get("x-kubernetes-validations", ()):
        yield rule["rule"]
    for sub in child_schemas(schema):
        yield from cel_rules(sub)


def child_schemas(schema: dict) -> Iterator[dict]:
    yield from schema.get("properties", {}).values()
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield schema[key]


class CrdJudge:
    """The verdict of one CRD on objects of its kind. `not_evaluated` maps CEL rules that cel-python cannot evaluate
    (or that Kubernetes does not evaluate on create) to the reason; every other rule must compile."""

    def __init__(self, crd: dict, not_evaluated: Mapping[str, str]):
        self.kind = crd["spec"]["names"]["kind"]
        group = crd["spec"]["group"]
        self.schemas = {
            f"{group}/{v['name']}": v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v.get("served")
        }
        self.not_evaluated = not_evaluated
        self.skipped: set[str] = set()
        self.validators = {}
        for api_version, schema in self.schemas.items():
            jsonschema.Draft7Validator.check_schema(schema)
            self.validators[api_version] = jsonschema.Draft7Validator(schema, format_checker=FORMATS)
            for rule in cel_rules(schema):
                if rule in not_evaluated:
                    self.skipped.add(rule)
                elif rule not in _PROGRAMS:
                    _PROGRAMS[rule] = _CEL.program(_CEL.compile(rule))

    def problems(self, obj: dict) -> list[str]:
        """What the API server would refuse in `obj` on create (empty when it would accept it)."""
        if obj.get("kind") != self.kind:
            return [f"kind: must be {self.kind}"]
        schema = self.schemas.get(obj.get("apiVersion"))
        if schema is None:
            return [f"apiVersion: {obj.get('apiVersion')!r} is not served (served: {sorted(self.schemas)})"]
        obj = defaulted(obj, schema)
        errors = self.validators[obj["apiVersion"]].iter_errors(obj)
        found = [f"{path_of(e.absolute_path)}: {e.message}" for e in errors]
        # CEL rules run only on schema-valid objects here, so that an invalid sample names the one rule it breaks.
        for value, sub, path in nodes(obj, schema, "") if not found else ():
            found += list_type_problems(value, sub, path)
            found += [f"{path}: {p}" for p in self.rule_failures(value, sub)]
        return found

    def rule_failures(self, value: object, schema: dict) -> list[str]:
        """The messages of the CEL rules at one schema node that `value` breaks. As in Kubernetes, a rule whose
        evaluation fails (e.g. reads an absent field) counts as broken."""
        out = []
        for rule in schema.get("x-kubernetes-validations", ()):
            text, message = rule["rule"], rule.get("message", rule["rule"])
            if text in self.not_evaluated:
                continue
            try:
                result = _PROGRAMS[text].evaluate({"self": cel_value(value, schema)})
            except celpy.CELEvalError as error:
                result = error
            if isinstance(result, celpy.CELEvalError):
                if "undeclared reference" in str(result.args[0]):
                    raise RuntimeError(f"rule needs a function cel-python lacks; list it in NOT_EVALUATED: {text}")
                out.append(f"{message} (evaluation error: {result.args[0]})")
            elif not result:
                out.append(message)
        return out


def defaulted(value: object, schema: dict) -> object:
    """`value` with null fields pruned and the schema's defaults applied (structural defaulting)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out = {k: v for k, v in value.items() if v is not None or props.get(k, {}).get("nullable")}
        for key, prop in props.items():
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        return {k: defaulted(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in out.items()}
    if isinstance(value, list):
        return [defaulted(item, schema.get("items", {})) for item in value]
    return value


def nodes(value: object, schema: dict, path: str) -> Iterator[tuple[object, dict, str]]:
    """Every (value, schema, path) of an object that its schema describes, the object itself first."""
    yield value, schema, path
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                yield from nodes(sub, sub_schema, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from nodes(item, schema["items"], f"{path}[{index}]")


def list_type_problems(value: object, schema: dict, path: str) -> list[str]:
    """Duplicates in a `set` list, or duplicate keys in a `map` list."""
    list_type = schema.get("x-kubernetes-list-type")
    if not isinstance(value, list) or list_type not in ("set", "map"):
        return []
    keys = schema.get("x-kubernetes-list-map-keys", ())
    seen = [repr(item) if list_type == "set" else repr([item.get(k) for k in keys]) for item in value]
    dups = sorted({k for k in seen if seen.count(k) > 1})
    return [f"{path}: Duplicate value: {d}" for d in dups]


def cel_value(value: object, schema: dict) -> object:
    """A JSON value as CEL sees it, with reserved property names escaped the Kubernetes way."""
    if isinstance(value, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        if props is not None:
            return celtypes.MapType(
                {celtypes.StringType(escape(k)): cel_value(v, props.get(k, {})) for k, v in value.items()}
            )
        sub = extra if isinstance(extra, dict) else {}
        return celtypes.MapType({celtypes.StringType(k): cel_value(v, sub) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([cel_value(item, schema.get("items", {})) for item in value])
    return celpy.json_to_cel(value)


def escape(name: str) -> str:
    """Kubernetes' escaping of a property name for CEL."""
    if name in CEL_RESERVED:
        return f"__{name}__"
    for raw, escaped in (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"), ("/", "__slash__")):
        name = name.replace(raw, escaped)
    return name


def path_of(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<object>"
