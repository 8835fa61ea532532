"""The time stamped on conditions that change, derived from the request instead of the clock.

A condition's lastTransitionTime moves only when its status changes (the translator keeps the observed one
otherwise). For a condition that does change, the hooks use the latest time recorded anywhere in the objects of the
request: creation and deletion timestamps, managedFields update times, condition times. Something the request shows
was written at that moment, and that write is what made the condition change, so the stamp is close to the real
transition; it never precedes a transition already recorded; and the same request always gets the same answer,
byte for byte, which Metacontroller needs (a status that changes on every call is rewritten in a hot loop)."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = "1970-01-01T00:00:00Z"  # only for objects that carry no time at all (never the case in a cluster)
TIME_FIELDS = frozenset(
    {
        "creationTimestamp",
        "deletionTimestamp",
        "time",
        "lastTransitionTime",
        "lastUpdateTime",
        "lastProbeTime",
        "lastHeartbeatTime",
    }
)


def transition_time(*documents: object) -> str:
    """The latest RFC 3339 time found under a time field anywhere in `documents`, in metav1.Time form."""
    latest: datetime | None = None
    stack = list(documents)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in TIME_FIELDS and isinstance(item, str):
                    parsed = _parse(item)
                    if parsed is not None and (latest is None or parsed > latest):
                        latest = parsed
                elif isinstance(item, (dict, list, tuple)):
                    stack.append(item)
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    if latest is None:
        return EPOCH
    return (
        f"{latest.year:04d}-{latest.month:02d}-{latest.day:02d}"
        f"T{latest.hour:02d}:{latest.minute:02d}:{latest.second:02d}Z"
    )


def _parse(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
