"""Status the hooks write: poolgate's own `status.parents` entries merged into the observed status, and conditions
that report an object poolgate cannot read.

HTTPRoute and InferencePool status is shared with other Gateway implementations. Metacontroller replaces the whole
status with what a hook returns, so the hooks return the observed status with only poolgate's entries replaced;
other controllers' entries go back exactly as they were observed. Metacontroller (v4.17.2) writes that status as an
update at the observed resourceVersion: if another controller wrote in between, the update conflicts and is dropped,
not retried, and with `ignoreStatusChanges` the other controller's write does not requeue the object. Nothing of
theirs is lost, but poolgate's entries would wait for the controller's resync period (300 s). So every response that
writes shared status asks for a resync after SHARED_STATUS_RESYNC_SECONDS (`resyncAfterSeconds`, which Metacontroller
enqueues before it writes the status): a dropped write is redone within that time plus one sync."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hooks.metacontroller import sync_response
from hooks.raw import integer, items, mapping
from poolgate.api import Problem
from poolgate.api.contract import CONTROLLER_NAME
from poolgate.translate.conditions import Cond
from poolgate.translate.status import conditions_json

MAX_MESSAGE = 32768  # metav1.Condition message limit
SHARED_STATUS_RESYNC_SECONDS = 30


def shared_status_response(
    status: dict | None, attachments: Sequence[dict] = (), labels: Mapping[str, str | None] | None = None
) -> dict:
    """A sync response writing status shared with other controllers (None: untouched); when it writes, it asks for
    a resync after SHARED_STATUS_RESYNC_SECONDS, so a write Metacontroller dropped on a conflict is redone."""
    resync = None if status is None else SHARED_STATUS_RESYNC_SECONDS
    return sync_response(status, attachments, labels=labels, resync_after=resync)


def is_ours(entry: object, controller: str = CONTROLLER_NAME) -> bool:
    """Whether a `status.parents` entry is one `controller` (by default poolgate's own Gateways') writes."""
    return isinstance(entry, dict) and entry.get("controllerName") == controller


def observed_parents(obj: dict) -> list:
    """The observed `status.parents` list of a raw object ([] when absent or not a list)."""
    return items(mapping(obj.get("status")).get("parents"))


def with_parents(obj: dict, ours: list[dict], controller: str = CONTROLLER_NAME) -> dict | None:
    """The object's whole status with `controller`'s `parents` entries replaced by `ours` and every other entry kept
    as observed; None (leave the status alone) when that controller has no entry before or after."""
    observed = observed_parents(obj)
    if not ours and not any(is_ours(entry, controller) for entry in observed):
        return None
    status = dict(mapping(obj.get("status")))
    status["parents"] = [entry for entry in observed if not is_ours(entry, controller)] + ours
    return status


def computed_entries(
    status_objects: list[dict], kind: str, namespace: str, name: str, controller: str = CONTROLLER_NAME
) -> list[dict]:
    """`controller`'s `status.parents` entries for one object, from a translator's status objects."""
    for item in status_objects:
        meta = item["metadata"]
        if item["kind"] == kind and meta["name"] == name and meta.get("namespace", "") == namespace:
            return [entry for entry in item["status"].get("parents", []) if is_ours(entry, controller)]
    return []


def problems_message(problems: list[Problem]) -> str:
    """One condition message naming every invalid field: `field: problem; field: problem`."""
    text = "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in problems)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def generation(obj: dict) -> int:
    """metadata.generation of a raw object (0 when missing or not a number)."""
    return integer(obj["metadata"].get("generation"))


def conditions(conds: list[Cond], obj: dict, previous: object, now: str) -> list[dict]:
    """metav1.Conditions for a raw object, keeping a previous condition's lastTransitionTime while its status holds."""
    return conditions_json(conds, generation(obj), items(previous), now)
