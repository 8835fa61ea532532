"""Everything the Envoy Gateway target generates is accepted by the API server: Envoy Gateway v1.9's and Gateway
API's CRDs judge it (JSON Schema + CEL rules, tests/api/crdcheck.py), the Kubernetes schema judges the Services, and
the status it reports fits the HTTPRoute and InferencePool status schemas."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest

from poolgate.api.builders import build, grant, pod, pool, pool_ref, route, service
from poolgate.egtarget import EnvoyGatewayOptions, translate_envoy_gateway
from poolgate.translate.status import StatusOptions
from tests.api.crdcheck import CrdJudge, read_crd
from tests.api.test_crd_parity import NOT_EVALUATED
from tests.envoy_gateway.cases import (
    MODEL_ROUTER,
    eg_class,
    eg_gateway,
    find,
    model_routing,
    rule,
    service_ref,
    split_route,
    two_pools,
)
from tests.hooks.schemas import KUBERNETES_VERSION

CRDS = (
    "envoy-gateway/gateway.envoyproxy.io_envoyextensionpolicies.yaml",
    "envoy-gateway/gateway.envoyproxy.io_envoypatchpolicies.yaml",
    "envoy-gateway/gateway.envoyproxy.io_clienttrafficpolicies.yaml",
    "envoy-gateway/gateway.envoyproxy.io_backendtrafficpolicies.yaml",
    "envoy-gateway/gateway.envoyproxy.io_backends.yaml",
    "gateway-api/gateway.networking.k8s.io_gateways.yaml",
    "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
    "gateway-api/gateway.networking.k8s.io_referencegrants.yaml",
    "gateway-api-inference-extension/inference.networking.k8s.io_inferencepools.yaml",
)


@pytest.fixture(scope="module")
def judges(reference_crds) -> dict[str, CrdJudge]:
    return {judge.kind: judge for judge in (CrdJudge(read_crd(reference_crds / f), NOT_EVALUATED) for f in CRDS)}


def scenarios() -> dict[str, list]:
    https = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "hostname": "ai.example.com",
        "tls": {"certificateRefs": [{"name": "ai-cert"}]},
    }
    return {
        "two pools, a Service rule": two_pools(),
        "cross-namespace pool, HTTPS, unserved rules": build(
            eg_class(),
            eg_gateway(listeners=[https]),
            grant("ml", "default"),
            service("epp", namespace="ml"),
            service("docs"),
            pool(namespace="ml"),
            pod("p0", "10.0.0.1", namespace="ml"),
            route(
                hostnames=["ai.example.com"],
                rules=[
                    rule(pool_ref("pool", namespace="ml"), header="a", timeouts={"backendRequest": "30s"}),
                    rule(pool_ref("pool", namespace="ml"), service_ref("docs", 9002), header="b"),
                    rule(
                        service_ref("docs", 9002),
                        header="c",
                        filters=[
                            {
                                "type": "RequestHeaderModifier",
                                "requestHeaderModifier": {"set": [{"name": "x-docs", "value": "1"}]},
                            }
                        ],
                    ),
                ],
            ),
        ),
        "pool without picker": build(eg_class(), eg_gateway(), pool(picker=None), route()),
        "weighted pools of mixed failure modes": split_route(),
    }


@pytest.mark.parametrize("at_user_gateway", [False, True], ids=["sibling", "at-user-gateway"])
@pytest.mark.parametrize("name", list(scenarios()))
def test_every_generated_object_is_accepted(judges, name, at_user_gateway):
    objects = translate_envoy_gateway(scenarios()[name], EnvoyGatewayOptions(at_user_gateway=at_user_gateway)).objects()
    assert objects
    for obj in objects:
        if obj["kind"] == "Service":
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        else:
            assert judges[obj["kind"]].problems(obj) == [], obj


def test_model_routing_objects_are_accepted(judges):
    objects = translate_envoy_gateway(model_routing(), EnvoyGatewayOptions(model_router=MODEL_ROUTER)).objects()
    assert "poolgate-model-routing" in str(objects)
    for obj in objects:
        if obj["kind"] == "Service":
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        else:
            assert judges[obj["kind"]].problems(obj) == [], obj


def test_the_judge_refuses_what_envoy_gateway_refuses(judges):
    """FailOpen with full-duplex bodies is what the FailOpen pools avoid; the judge must see why."""
    objects = translate_envoy_gateway(two_pools()).objects()
    policy = copy.deepcopy(find(objects, "EnvoyExtensionPolicy", "models-poolgate-qwen"))
    policy["spec"]["extProc"][0]["processingMode"]["request"]["body"] = "FullDuplexStreamed"
    assert judges["EnvoyExtensionPolicy"].problems(policy) == [
        "spec.extProc[0]: If FullDuplexStreamed body processing mode is used, FailOpen must be false."
    ]
    patch = copy.deepcopy(find(objects, "EnvoyPatchPolicy"))
    patch["spec"]["jsonPatches"][0]["type"] = "type.googleapis.com/envoy.config.cluster.v3.ClusterX"
    assert judges["EnvoyPatchPolicy"].problems(patch)


@pytest.mark.parametrize("name", list(scenarios()))
def test_the_reported_status_fits_the_status_schemas(judges, name):
    reported = translate_envoy_gateway(scenarios()[name]).status(StatusOptions(now="2026-01-01T00:00:00Z"))
    assert {s["kind"] for s in reported} == {"HTTPRoute", "InferencePool"}
    for obj in reported:
        schema = judges[obj["kind"]].schemas[obj["apiVersion"]]["properties"]["status"]
        jsonschema.Draft7Validator(schema).validate(obj["status"])
