"""Shared by the reliability tests: how a scenario's figures are reported, and its failures shown when it fails."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def report(record_property):
    """Print a scenario's row (visible with -s or in the captured output of a failure) and record it in the JUnit
    XML properties, so every run leaves its figures behind."""

    def record(result) -> None:
        print(json.dumps(result.row))
        record_property(result.row["scenario"], json.dumps(result.row))

    return record


def failures(result, limit: int = 10) -> list:
    """The first requests of a scenario that did not get a 2xx, for assertion messages."""
    return [o for o in result.outcomes if not o.ok][:limit]
