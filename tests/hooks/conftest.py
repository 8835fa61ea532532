"""Fixtures of the hooks tests: the Flask app, and validation against the Kubernetes and reference CRD schemas."""

from __future__ import annotations

import pytest

from hooks.app import create_app
from tests.conftest import REPO
from tests.hooks.schemas import Schemas


@pytest.fixture(scope="session")
def schemas(reference_crds) -> Schemas:
    """Kubernetes schemas plus the CRDs of Metacontroller, Gateway API, the Inference Extension and crds/."""
    return Schemas(reference_crds, REPO / "crds")


@pytest.fixture(scope="module")
def client():
    """A test client of the hooks app with default settings."""
    return create_app().test_client()
