"""Shared fixtures: building objects from YAML text, and the real Envoy binary."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from poolgate.api import parse_objects

REPO = Path(__file__).resolve().parent.parent


def find_reference_crds() -> Path:
    """The upstream CRDs shared with the project (../shared/reference/crds), or $POOLGATE_REFERENCE_CRDS."""
    for candidate in (
        os.environ.get("POOLGATE_REFERENCE_CRDS"),
        REPO.parent / "shared" / "reference" / "crds",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise RuntimeError("upstream reference CRDs not found: set POOLGATE_REFERENCE_CRDS to shared/reference/crds")


@pytest.fixture(scope="session")
def reference_crds() -> Path:
    """Directory of the upstream CRDs (gateway-api/, gateway-api-inference-extension/, llm-d-router/, ...)."""
    return find_reference_crds()


def objects_from_yaml(text: str) -> list:
    """Typed objects from a multi-document YAML string (fails the test on any invalid object)."""
    docs = [d for d in yaml.safe_load_all(textwrap.dedent(text)) if d]
    objects, problems = parse_objects(("test", d) for d in docs)
    assert not problems, [str(p) for p in problems]
    return objects


@pytest.fixture
def envoy_validate(tmp_path):
    """Validate an Envoy bootstrap dict with the real Envoy binary; fails the test with Envoy's message."""
    from poolgate.envoy import validate
    from poolgate.translate.output import write_yaml

    def check(bootstrap: dict, name: str = "bootstrap.yaml") -> None:
        path = tmp_path / name
        write_yaml(path, bootstrap)
        ok, output = validate(path)
        assert ok, output

    return check
