"""Turning YAML/JSON documents into typed API objects, with errors that name the object and the field."""

from __future__ import annotations

import gc
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from poolgate.api.base import KubeObject
from poolgate.api.core import Deployment, Namespace, Pod, Service
from poolgate.api.gateway import Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from poolgate.api.inference import InferenceModelRewrite, InferenceObjective, InferencePool

# kind -> (model, apiVersions it is served under)
KINDS: dict[str, tuple[type[KubeObject], tuple[str, ...]]] = {
    "GatewayClass": (GatewayClass, ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")),
    "Gateway": (Gateway, ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")),
    "HTTPRoute": (HTTPRoute, ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")),
    "ReferenceGrant": (ReferenceGrant, ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")),
    "InferencePool": (InferencePool, ("inference.networking.k8s.io/v1",)),
    "InferenceObjective": (InferenceObjective, ("inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2")),
    "InferenceModelRewrite": (InferenceModelRewrite, ("inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2")),
    "Service": (Service, ("v1",)),
    "Pod": (Pod, ("v1",)),
    "Namespace": (Namespace, ("v1",)),
    "Deployment": (Deployment, ("apps/v1",)),
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input object: where it is, which field, and what is wrong."""

    source: str  # e.g. "examples/quickstart.yaml#3" or "Metacontroller request"
    object: str  # e.g. "HTTPRoute default/llm-route"
    field: str  # e.g. "spec.rules[0].backendRefs[1].weight" ("" when the whole object is at fault)
    message: str

    def __str__(self) -> str:
        where = f"{self.object}: {self.field}" if self.field else self.object
        return f"{self.source}: {where}: {self.message}"


class InvalidObjects(Exception):
    """Raised when input objects are invalid; `problems` lists every one found (not just the first)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def field_path(loc: Iterable[str | int]) -> str:
    """Render a pydantic error location as a JSON field path: ('spec', 'rules', 0, 'name') -> spec.rules[0].name."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = str(part)
        else:
            path += f".{part}"
    return path


def describe(raw: dict) -> str:
    """Name a raw object the way messages do: `Kind namespace/name` (or what is known of it)."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("name") or "<unnamed>"
    kind = raw.get("kind") or "<no kind>"
    namespace = meta.get("namespace")
    if kind in ("GatewayClass", "Namespace"):
        return f"{kind} {name}"
    return f"{kind} {namespace or 'default'}/{name}"


def parse_object(raw: object, source: str = "input") -> KubeObject | None:
    """Validate one raw object. Returns the typed object, None for kinds poolgate does not read, or raises
    InvalidObjects naming the field at fault."""
    if not isinstance(raw, dict):
        raise InvalidObjects(
            [Problem(source, "<document>", "", f"expected a mapping (a Kubernetes object), got {type(raw).__name__}")]
        )
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        return None
    model, versions = KINDS[kind]
    api_version = raw.get("apiVersion")
    if api_version not in versions:
        hint = ""
        if kind == "InferencePool" and isinstance(api_version, str) and "x-k8s.io" in api_version:
            hint = " (the v1alpha2 InferencePool is no longer served since GIE v1.5)"
        raise InvalidObjects(
            [
                Problem(
                    source,
                    describe(raw),
                    "apiVersion",
                    f"{kind} is served as {' or '.join(versions)}, not {api_version!r}{hint}",
                )
            ]
        )
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InvalidObjects(
            [
                Problem(source, describe(raw), field_path(e["loc"]), e["msg"].removeprefix("Value error, "))
                for e in error.errors(include_url=False)
            ]
        ) from None


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: validating thousands of objects that all stay alive otherwise triggers
    repeated full collections, which made parsing 10,000 pods 2.3x slower (grows faster than linear)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_objects(raws: Iterable[tuple[str, object]]) -> tuple[list[KubeObject], list[Problem]]:
    """Validate many (source, raw) objects: the valid ones and every problem found in the others."""
    objects: list[KubeObject] = []
    problems: list[Problem] = []
    with _gc_paused():
        _parse_into(raws, objects, problems)
    return objects, problems


def _parse_into(raws: Iterable[tuple[str, object]], objects: list[KubeObject], problems: list[Problem]) -> None:
    for source, raw in raws:
        try:
            obj = parse_object(raw, source)
        except InvalidObjects as error:
            problems.extend(error.problems)
            continue
        if obj is not None:
            objects.append(obj)


def read_documents(path: str | Path) -> list[tuple[str, object]]:
    """Read every YAML document of a file (and the items of `kind: List` documents) as (source, raw) pairs.
    Raises InvalidObjects if the file is not valid YAML."""
    path = Path(path)
    try:
        text = path.read_text()
        documents = list(yaml.safe_load_all(text))
    except OSError as error:
        raise InvalidObjects([Problem(str(path), "<file>", "", error.strerror or str(error))]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InvalidObjects(
            [Problem(str(path), "<file>", "", f"invalid YAML: {where}{getattr(error, 'problem', None) or error}")]
        ) from None
    out: list[tuple[str, object]] = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        if isinstance(document, dict) and document.get("kind") == "List" and isinstance(document.get("items"), list):
            out.extend((f"{path}#{index}.{i}", item) for i, item in enumerate(document["items"], start=1))
        else:
            out.append((f"{path}#{index}", document))
    return out


def load_files(paths: Iterable[str | Path]) -> list[KubeObject]:
    """Load and validate every object of the given YAML files; raises InvalidObjects listing all problems."""
    raws: list[tuple[str, object]] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            raws.extend(read_documents(path))
        except InvalidObjects as error:
            problems.extend(error.problems)
    objects, invalid = parse_objects(raws)
    problems.extend(invalid)
    if problems:
        raise InvalidObjects(problems)
    return objects
