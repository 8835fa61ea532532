"""Metacontroller's wire format for DecoratorControllers: reading sync/finalize and customize requests, writing
their responses.

The shapes follow Metacontroller v4.17.2's Go types (pkg/controller/decorator/api/v2/hooks.go,
pkg/controller/common/customize/api/v2/hooks.go). A decorator sync/finalize request is `{controller, object,
attachments, related, finalizing}`; its object maps are keyed `"<Kind>.<group>/<version>"` (`"<Kind>.<version>"` for
the core group), then `namespace/name` with hook version v2 (`name` for cluster-scoped objects; v1 keys by name
only). The hooks never rely on the map keys, only on the objects, so same-named objects of two namespaces never
shadow each other. A customize request is `{controller, parent}`. Responses carry only fields of the v2 response
types, which Metacontroller parses strictly (an unknown field fails the sync)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hooks.raw import mapping
from poolgate.api import InvalidObjects, KubeObject, Problem, parse_object, parse_objects

# Metacontroller records what a hook last returned for each attachment in this annotation (three-way merge base).
LAST_APPLIED_ANNOTATION = "metacontroller.k8s.io/last-applied-configuration"


Model = TypeVar("Model", bound=KubeObject)


class BadRequest(Exception):
    """The request is not a Metacontroller request this hook can answer (HTTP 400)."""


@dataclass(frozen=True)
class SyncRequest:
    """A sync (or finalize) request: the object, what is attached to it, and the related objects it asked for."""

    object: dict
    attachments: tuple[dict, ...]
    related: tuple[dict, ...]
    finalizing: bool

    @property
    def name(self) -> str:
        return self.object["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.object["metadata"].get("namespace") or ""

    def attachment(self, kind: str, name: str) -> dict | None:
        """The observed attachment of this kind and name, if there is one."""
        return next((a for a in self.attachments if a.get("kind") == kind and _name(a) == name), None)

    def typed_object(self, model: type[Model]) -> Model:
        """The request's object as poolgate's model of its kind; raises InvalidObjects naming the fields at fault."""
        typed = parse_object(self.object, "Metacontroller request")
        if not isinstance(typed, model):
            what = f"{self.object.get('kind')} {'/'.join(filter(None, (self.namespace, self.name)))}"
            raise InvalidObjects([Problem("Metacontroller request", what, "", f"expected a {model.__name__}")])
        return typed

    def related_objects(self) -> tuple[list[KubeObject], list[Problem]]:
        """The related objects poolgate reads, typed; invalid ones are left out (their own hooks report them)."""
        return parse_objects(("related", raw) for raw in self.related if isinstance(raw.get("kind"), str))


def parse_sync(body: object, kinds: tuple[str, ...]) -> SyncRequest:
    """Read a DecoratorController sync/finalize request whose object is one of `kinds`; raises BadRequest."""
    request = _require_object(body, "request body")
    obj = _parent(request, kinds, "object")
    finalizing = request.get("finalizing", False)
    if not isinstance(finalizing, bool):
        raise BadRequest("finalizing: expected true or false")
    return SyncRequest(
        object=obj,
        attachments=_object_map(request, "attachments"),
        related=_object_map(request, "related"),
        finalizing=finalizing,
    )


def parse_customize(body: object, kinds: tuple[str, ...]) -> dict:
    """The parent object of a customize request; raises BadRequest."""
    return _parent(_require_object(body, "request body"), kinds, "parent")


def _require_object(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(f"{what}: expected a JSON object, got {_type(value)}")
    return value


def _parent(request: dict, kinds: tuple[str, ...], field: str) -> dict:
    if field not in request:
        hook = "DecoratorController sync" if field == "object" else "customize"
        raise BadRequest(f"{field}: missing (is this a Metacontroller {hook} request?)")
    obj = _require_object(request[field], field)
    kind = obj.get("kind")
    if kind not in kinds:
        raise BadRequest(f"{field}.kind: this hook serves {' and '.join(kinds)}, not {kind!r}")
    if not isinstance(obj.get("apiVersion"), str):
        raise BadRequest(f"{field}.apiVersion: expected a string")
    metadata = _require_object(obj.get("metadata"), f"{field}.metadata")
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise BadRequest(f"{field}.metadata.name: expected a non-empty string")
    if not isinstance(metadata.get("namespace", ""), str):
        raise BadRequest(f"{field}.metadata.namespace: expected a string")
    return obj


def _object_map(request: dict, field: str) -> tuple[dict, ...]:
    """The objects of a `{"Kind.apiVersion": {key: object}}` map, sorted by kind, namespace and name."""
    groups = request.get(field)
    if groups is None:
        return ()
    out = []
    for group, objects in _require_object(groups, field).items():
        for key, obj in _require_object(objects, f"{field}[{group!r}]").items():
            out.append(_require_object(obj, f"{field}[{group!r}][{key!r}]"))
    return tuple(sorted(out, key=_sort_key))


def _sort_key(obj: dict) -> tuple[str, ...]:
    metadata = mapping(obj.get("metadata"))
    return tuple(
        str(v) for v in (obj.get("apiVersion"), obj.get("kind"), metadata.get("namespace") or "", metadata.get("name"))
    )


def _name(obj: dict) -> str | None:
    return mapping(obj.get("metadata")).get("name")


def _type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# --- responses ----------------------------------------------------------------------------------------------------


def sync_response(
    status: dict | None = None,
    attachments: Sequence[dict] = (),
    labels: Mapping[str, str | None] | None = None,
    finalized: bool | None = None,
    resync_after: float | None = None,
) -> dict:
    """A DecoratorController sync/finalize response. `status` None leaves the object's status as it is; listed
    attachments are created or updated, observed ones left out are deleted; `resync_after` seconds asks for another
    sync. Only fields of v4.17.2's DecoratorHookResponse (labels, annotations, status, attachments,
    resyncAfterSeconds, finalized)."""
    response: dict = {"attachments": sorted(attachments, key=_sort_key), "labels": dict(labels or {}), "status": status}
    if finalized is not None:
        response["finalized"] = finalized
    if resync_after is not None:
        response["resyncAfterSeconds"] = resync_after
    return response


def customize_response(rules: list[dict]) -> dict:
    """A customize response: the related-object rules, without duplicates, in a stable order."""
    unique = {json.dumps(rule, sort_keys=True): rule for rule in rules}
    return {"relatedResources": [unique[key] for key in sorted(unique)]}


def related_rule(
    api_version: str,
    resource: str,
    *,
    namespace: str | None = None,
    names: list[str] | None = None,
    label_selector: dict | None = None,
    namespace_selector: dict | None = None,
) -> dict:
    """One related-resource rule. With hook version v2 a rule with only a labelSelector selects in every
    namespace, `namespace` (+ `names`) selects in one, and `namespaceSelector` in the namespaces it matches."""
    rule: dict = {"apiVersion": api_version, "resource": resource}
    if namespace is not None:
        rule["namespace"] = namespace
    if names is not None:
        rule["names"] = sorted(set(names))
    if label_selector is not None:
        rule["labelSelector"] = label_selector
    if namespace_selector is not None:
        rule["namespaceSelector"] = namespace_selector
    return rule


def as_declared(observed: tuple[dict, ...]) -> list[dict]:
    """The attachments as this hook last declared them (Metacontroller's last-applied annotation), for keeping
    them unchanged while the object they serve is invalid; a bare reference when no declaration is recorded."""
    out = []
    for obj in observed:
        metadata = mapping(obj.get("metadata"))
        try:
            declared = json.loads(mapping(metadata.get("annotations")).get(LAST_APPLIED_ANNOTATION, ""))
        except (TypeError, ValueError):
            declared = None
        if not isinstance(declared, dict):
            declared = {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "metadata": {k: metadata[k] for k in ("name", "namespace") if k in metadata},
            }
        out.append(declared)
    return out
