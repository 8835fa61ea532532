"""Property tests: for random requests the hooks answer 200 or 400 (never 5xx), always the same bytes for the same
request, a status that is valid for the API server and that a second sync leaves as it is.

A few hundred examples by default; POOLGATE_HYPOTHESIS_EXAMPLES=N runs N per property for long runs."""

from __future__ import annotations

import copy
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.hooks.strategies import HOOK_KINDS, damaged_requests, requests

EXAMPLES = int(os.environ.get("POOLGATE_HYPOTHESIS_EXAMPLES", "150"))
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
STATUS_API = {
    "Gateway": "gateway.networking.k8s.io/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
    "GatewayClass": "gateway.networking.k8s.io/v1",
    "InferencePool": "inference.networking.k8s.io/v1",
}


def answer(client, path: str, body: dict) -> tuple[int, bytes]:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.data


@PROFILE
@given(requests())
def test_schema_shaped_requests_get_valid_deterministic_fixpoint_answers(client, schemas, request):
    path, body = request
    status, data = answer(client, path, body)
    assert status in (200, 400), data
    assert answer(client, path, body) == (status, data)
    if status == 400 or not path.endswith("/sync"):
        return
    response = json.loads(data)
    kind = HOOK_KINDS[path.split("/")[1]]
    for attachment in response["attachments"]:
        if "uid" not in attachment["metadata"]:  # as declared now (not kept as last declared)
            schemas.validate(attachment)
    if response["status"] is None:
        return
    schemas.validate_status(STATUS_API[kind], kind, response["status"])
    again = copy.deepcopy(body)
    again["object"]["status"] = response["status"]
    second = json.loads(answer(client, path, again)[1])
    assert (second["status"] or response["status"]) == response["status"], "a second sync rewrote the status"


@PROFILE
@given(damaged_requests())
def test_damaged_requests_get_200_or_400_and_never_a_crash(client, request):
    path, body = request
    status, data = answer(client, path, body)
    assert status in (200, 400), data
    assert answer(client, path, body) == (status, data)
    if status == 400:
        assert json.loads(data)["error"]["message"]


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"text"', b'{"object": {}}', b"\xff\xfe", b"{" * 5000])
def test_bodies_that_are_not_requests_get_400(client, body):
    for path in ("/gateways/sync", "/httproutes/customize"):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 400, (path, body[:20], response.data)
        assert response.get_json()["error"]["type"] == "invalid_request_error"
