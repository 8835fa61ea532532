"""Golden fixtures: Metacontroller-shaped requests for every hook and the responses reviewed by hand.

Each response must also be valid for the API server: every attachment against the Kubernetes schemas (strict) and
every status against its CRD's status schema."""

from __future__ import annotations

import json

import pytest

from hooks.metacontroller import parse_sync
from tests.hooks import cases
from tests.hooks.golden import (
    FIXTURES,
    UPDATE,
    check_or_update,
    committed_cases,
    expected_file,
    hook_path,
    request_file,
)

ALL = cases.all_cases()
PARENT_API = {
    "Gateway": "gateway.networking.k8s.io/v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
    "GatewayClass": "gateway.networking.k8s.io/v1",
    "InferencePool": "inference.networking.k8s.io/v1",
}


def test_committed_requests_are_the_cases():
    if UPDATE:
        for old in FIXTURES.rglob("*.json"):
            old.unlink()
    for case, request in ALL.items():
        check_or_update(request_file(case), request)
    assert committed_cases() == sorted(ALL)


@pytest.mark.parametrize("case", sorted(ALL))
def test_response_matches_golden(case, client):
    body = request_file(case).read_bytes() if not UPDATE else json.dumps(ALL[case]).encode()
    response = client.post(hook_path(case), data=body, content_type="application/json")
    check_or_update(expected_file(case), {"status": response.status_code, "body": response.get_json()})


@pytest.mark.parametrize("case", [c for c in sorted(ALL) if "/sync/" in c and "malformed" not in c])
def test_golden_response_is_valid_for_the_api_server(case, schemas):
    expected = json.loads(expected_file(case).read_text())
    assert expected["status"] == 200
    body = expected["body"]
    parent = parse_sync(ALL[case], tuple(PARENT_API)).object
    for attachment in body["attachments"]:
        assert attachment["metadata"]["namespace"] == parent["metadata"]["namespace"]
        schemas.validate(attachment)
    if body["status"] is not None:
        schemas.validate_status(PARENT_API[parent["kind"]], parent["kind"], body["status"])


@pytest.mark.parametrize("case", [c for c in sorted(ALL) if "malformed" in c])
def test_malformed_requests_get_400_with_a_message(case):
    expected = json.loads(expected_file(case).read_text())
    assert expected["status"] == 400
    assert expected["body"]["error"]["type"] == "invalid_request_error" and expected["body"]["error"]["message"]


# Fields of Metacontroller v4.17.2's v2 response types, which it parses strictly (kjson.UnmarshalStrict): any other
# field fails the sync. DecoratorHookResponse, CustomizeHookResponse and its RelatedResourceRule.
DECORATOR_RESPONSE = {"labels", "annotations", "status", "attachments", "resyncAfterSeconds", "finalized"}
CUSTOMIZE_RESPONSE = {"relatedResources"}
RELATED_RULE = {"apiVersion", "resource", "labelSelector", "namespaceSelector", "namespace", "names"}
SELECTOR = {"matchLabels", "matchExpressions"}


@pytest.mark.parametrize("case", [c for c in sorted(ALL) if "malformed" not in c])
def test_responses_use_only_fields_the_strict_v2_parser_accepts(case):
    body = json.loads(expected_file(case).read_text())["body"]
    if "/customize/" in case:
        assert set(body) <= CUSTOMIZE_RESPONSE
        for rule in body["relatedResources"]:
            assert set(rule) <= RELATED_RULE and {"apiVersion", "resource"} <= set(rule)
            for selector in (rule.get("labelSelector"), rule.get("namespaceSelector")):
                assert selector is None or set(selector) <= SELECTOR
        return
    assert set(body) <= DECORATOR_RESPONSE
    assert isinstance(body["attachments"], list) and isinstance(body.get("finalized", False), bool)
    assert all(isinstance(v, str) or v is None for v in (body.get("labels") or {}).values())


@pytest.mark.parametrize("case", [c for c in sorted(ALL) if "malformed" not in c])
def test_requests_are_shaped_like_decorator_hook_request_v2(case):
    """Keys as the Go types marshal them: `"<Kind>.<apiVersion>"` (GroupVersionKind.MarshalText), then
    `namespace/name` (UniformObjectMap), just `name` for cluster-scoped objects."""
    request = ALL[case]
    if "/customize/" in case:
        assert set(request) == {"controller", "parent"}
        return
    assert set(request) == {"controller", "object", "attachments", "related", "finalizing"}
    assert request["controller"]["kind"] == "DecoratorController"
    for field in ("attachments", "related"):
        for group, objects in request[field].items():
            for key, obj in objects.items():
                assert group == f"{obj['kind']}.{obj['apiVersion']}"
                metadata = obj["metadata"]
                assert key == "/".join(filter(None, (metadata.get("namespace"), metadata["name"])))
