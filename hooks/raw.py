"""Lenient readers of raw Kubernetes JSON: a field of the wrong type reads as empty instead of raising, because the
hooks also look at objects that failed validation (to report them) and at objects other controllers wrote."""

from __future__ import annotations


def mapping(value: object) -> dict:
    """`value` if it is a JSON object, else {}."""
    return value if isinstance(value, dict) else {}


def items(value: object) -> list:
    """`value` if it is a JSON array, else []."""
    return value if isinstance(value, list) else []


def integer(value: object, default: int = 0) -> int:
    """`value` if it is a JSON integer, else `default`."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default
