"""What the hooks promise, checked directly on the golden requests and small variations of them."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from hooks import envoy, gateway, gatewayclass, inferencepool
from hooks.app import HOOKS, create_app
from hooks.metacontroller import as_declared, parse_sync
from hooks.settings import HookSettings, SettingsError, load_settings
from hooks.status import SHARED_STATUS_RESYNC_SECONDS
from hooks.timestamps import EPOCH, transition_time
from tests.conftest import REPO
from tests.hooks import cases
from tests.hooks.golden import hook_path, request_file
from tests.hooks.related_sizes import related
from tests.hooks.related_sizes import sync_request as related_sync_request
from tests.support.hookenvoy import observed_pools

SYNC_CASES = [c for c in sorted(cases.all_cases()) if "/sync/" in c and "malformed" not in c]


def post(client, case: str, request: dict) -> dict:
    response = client.post(hook_path(case), data=json.dumps(request), content_type="application/json")
    assert response.status_code == 200, response.data
    return response.get_json()


@pytest.mark.parametrize("case", SYNC_CASES)
def test_written_status_is_a_fixpoint(case, client):
    """Feeding the status a hook returned back in (as the next sync sees it) returns the same status: no condition
    time moves, so Metacontroller never rewrites status in a loop."""
    request = cases.all_cases()[case]
    first = post(client, case, request)
    if first["status"] is None:
        return
    again = copy.deepcopy(request)
    again["object"]["status"] = first["status"]
    second = post(client, case, again)
    assert (second["status"] or again["object"]["status"]) == first["status"]
    assert second["attachments"] == first["attachments"]


@pytest.mark.parametrize("case", SYNC_CASES)
def test_hook_version_v1_requests_get_the_same_answer(case, client):
    """v1 keys namespaced objects of the maps by name, v2 by namespace/name; the objects are the same."""
    v2 = cases.all_cases()[case]

    def by_name(groups: dict) -> dict:
        return {kind: {obj["metadata"]["name"]: obj for obj in objects.values()} for kind, objects in groups.items()}

    v1 = {**v2, "attachments": by_name(v2["attachments"])}
    assert v1["attachments"] != v2["attachments"] or not any(v2["attachments"].values())
    assert post(client, case, v1) == post(client, case, v2)


def test_composite_controller_shaped_requests_are_refused(client):
    """`parent`/`children` is what a CompositeController gets; a decorator hook answers it 400, naming `object`."""
    request = cases.all_cases()["gateways/sync/two-gateways-a"]
    composite = {"controller": request["controller"], "parent": request["object"], "children": {}}
    response = client.post("/gateways/sync", json=composite)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith("object: missing")


def test_answers_do_not_depend_on_the_process():
    """Hook replicas are separate processes with their own hash seeds; they must answer alike, byte for byte."""
    script = (
        "import sys; from hooks.app import HOOKS, create_app; client = create_app().test_client()\n"
        "for case in sys.argv[1:]:\n"
        "    sys.stdout.buffer.write(client.post('/' + '/'.join(case.split('/')[:2]),"
        " data=open('tests/hooks/fixtures/' + case + '.json', 'rb').read()).data + b'\\n')"
    )
    answers = {
        subprocess.run(
            [sys.executable, "-c", script, *SYNC_CASES],
            cwd=REPO,
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(answers) == 1
    assert answers.pop().count(b"\n") == len(SYNC_CASES) and all(request_file(c).exists() for c in SYNC_CASES)


def test_gateway_config_holds_only_its_routes_and_each_pools_failure_mode():
    request = cases.all_cases()["gateways/sync/two-gateways-a"]
    response = gateway.sync(request, HookSettings())
    config_map = next(a for a in response["attachments"] if a["kind"] == "ConfigMap")
    assert sorted(config_map["data"]) == ["bootstrap.yaml", "cds.yaml", "lds.yaml"]
    listeners = yaml.safe_load(config_map["data"]["lds.yaml"])["resources"]
    assert [lst["name"] for lst in listeners] == ["poolgate/default/gw-a/8080"]
    manager = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert all(route["name"].startswith("default/llm-route/") for route in routes)
    weighted = routes[1]["route"]["weighted_clusters"]["clusters"]
    modes = {
        c["name"]: c["typed_per_filter_config"]["poolgate.endpoint_picker"]["overrides"]["failure_mode_allow"]
        for c in weighted
    }
    assert modes == {"poolgate/pool/default/llama": True, "poolgate/pool/default/qwen": False}
    assert [c["weight"] for c in weighted] == [70, 30]
    clusters = {c["name"]: c for c in yaml.safe_load(config_map["data"]["cds.yaml"])["resources"]}
    qwen = clusters["poolgate/pool/default/qwen"]
    assert qwen["type"] == "STRICT_DNS"
    endpoints = qwen["load_assignment"]["endpoints"][0]["lb_endpoints"]
    host = "qwen-endpoints.default.svc.cluster.local"
    assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
        {"address": host, "port_value": port} for port in (8000, 8001, 8002)
    ]
    service = next(a for a in response["attachments"] if a["kind"] == "Service")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]


def test_route_changes_reach_envoy_through_the_config_map_without_rolling_the_pods():
    request = cases.all_cases()["gateways/sync/two-gateways-a"]

    def objects(req) -> dict[str, dict]:
        return {a["kind"]: a for a in gateway.sync(req, HookSettings())["attachments"]}

    changed_route = copy.deepcopy(request)
    changed_route["related"]["HTTPRoute.gateway.networking.k8s.io/v1"]["default/llm-route"]["spec"]["rules"].pop(0)
    before, after = objects(request), objects(changed_route)
    assert before["ConfigMap"]["data"]["lds.yaml"] != after["ConfigMap"]["data"]["lds.yaml"]
    assert before["Deployment"] == after["Deployment"]
    bootstrap_hash = hashlib.sha256(before["ConfigMap"]["data"]["bootstrap.yaml"].encode()).hexdigest()[:16]
    assert before["Deployment"]["spec"]["template"]["metadata"]["annotations"] == {
        "poolgate.dev/bootstrap-hash": bootstrap_hash
    }  # a new bootstrap (poolgate upgrade) rolls the pods


@pytest.mark.parametrize(
    "deployment_status, service_status, programmed, words",
    [
        (cases.available_deployment_status(), cases.load_balancer_status("203.0.113.10"), True, "serving"),
        (
            {
                "observedGeneration": 1,
                "availableReplicas": 0,
                "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}],
            },
            cases.load_balancer_status("203.0.113.10"),
            False,
            "0 of 1 Envoy replicas",
        ),
        (
            {**cases.available_deployment_status(), "observedGeneration": 0},
            cases.load_balancer_status("203.0.113.10"),
            False,
            "to roll out its latest spec",
        ),
        (cases.available_deployment_status(), {"loadBalancer": {}}, False, "to get an address"),
    ],
)
def test_programmed_follows_the_observed_deployment_and_service(deployment_status, service_status, programmed, words):
    request = copy.deepcopy(cases.all_cases()["gateways/sync/two-gateways-a"])
    request["attachments"]["Deployment.apps/v1"]["default/gw-a-envoy"]["status"] = deployment_status
    request["attachments"]["Service.v1"]["default/gw-a-envoy"]["status"] = service_status
    status = gateway.sync(request, HookSettings())["status"]
    cond = next(c for c in status["conditions"] if c["type"] == "Programmed")
    assert (cond["status"] == "True") is programmed
    assert words in cond["message"]
    assert ("addresses" in status) is bool(service_status["loadBalancer"])


def test_cluster_ip_service_gives_its_cluster_ip_as_address():
    request = copy.deepcopy(cases.all_cases()["gateways/sync/two-gateways-a"])
    service = request["attachments"]["Service.v1"]["default/gw-a-envoy"]
    service["spec"] = {**service["spec"], "type": "ClusterIP", "clusterIP": "10.96.0.40"}
    status = gateway.sync(request, HookSettings(gateway_service_type="ClusterIP"))["status"]
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.96.0.40"}]


def test_a_new_condition_is_stamped_with_the_latest_time_in_the_request_and_kept_after():
    request = copy.deepcopy(cases.all_cases()["gateways/sync/two-gateways-b"])
    first = gateway.sync(request, HookSettings())["status"]
    assert {c["lastTransitionTime"] for c in first["conditions"]} == {cases.EDITED}
    request["object"]["status"] = first
    request["related"]["HTTPRoute.gateway.networking.k8s.io/v1"]["default/b-route"]["metadata"]["managedFields"][0][
        "time"
    ] = "2026-04-01T00:00:00Z"
    second = gateway.sync(request, HookSettings())["status"]
    assert second["conditions"] == first["conditions"]


def test_transition_time_is_the_latest_parsable_time_field():
    docs = [
        {
            "metadata": {
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"time": "2026-01-03T04:05:06Z"}, {"time": "not a time"}],
            }
        },
        [{"status": {"conditions": [{"lastTransitionTime": "2026-01-02T00:00:00+02:00"}]}}],
        {"spec": {"time": 5, "note": "2030-01-01T00:00:00Z"}},
    ]
    assert transition_time(*docs) == "2026-01-03T04:05:06Z"
    assert transition_time({"a": [{"b": "c"}]}) == EPOCH
    assert transition_time({"time": "0001-01-01T00:00:00+14:00"}) == EPOCH


def test_invalid_pool_keeps_its_attachments_as_last_declared():
    request = cases.all_cases()["inferencepools/sync/invalid-target-ports"]
    response = inferencepool.sync(request, HookSettings())
    observed = parse_sync(request, ("InferencePool",)).attachments
    assert response["attachments"] == [
        json.loads(o["metadata"]["annotations"]["metacontroller.k8s.io/last-applied-configuration"]) for o in observed
    ]
    [condition] = response["status"]["parents"][0]["conditions"]
    assert condition["message"] == "spec: targetPorts: port number must be unique"


def test_declared_attachment_without_a_record_is_kept_by_reference():
    bare = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns", "uid": "1", "annotations": {"x": "y"}},
        "spec": {"a": 1},
    }
    assert as_declared((bare,)) == [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    ]


def test_managed_picker_config_names_the_default_profile_unless_the_pool_names_one():
    request = copy.deepcopy(cases.all_cases()["inferencepools/sync/managed-picker"])

    def config(settings: HookSettings) -> dict:
        config_map = next(a for a in inferencepool.sync(request, settings)["attachments"] if a["kind"] == "ConfigMap")
        return yaml.safe_load(config_map["data"]["config.yaml"])

    assert config(HookSettings())["schedulingProfiles"] == [{"name": "llmd-default"}]
    del request["object"]["metadata"]["annotations"]["poolgate.dev/scheduling-profile"]
    assert config(HookSettings(picker_profile="poolgate-default")) == {
        "apiVersion": "llm-d.ai/v1alpha1",
        "kind": "EndpointPickerConfig",
        "schedulingProfiles": [{"name": "poolgate-default"}],
    }
    del request["object"]["metadata"]["annotations"]["poolgate.dev/managed-picker"]
    kinds = [a["kind"] for a in inferencepool.sync(request, HookSettings())["attachments"]]
    assert kinds == ["Service"]  # the endpoints Service only: no picker without the annotation


def test_managed_picker_replicas_find_each_other_through_their_headless_service():
    request = cases.all_cases()["inferencepools/sync/managed-picker"]

    def picker(settings: HookSettings) -> tuple[dict, dict]:
        attachments = inferencepool.sync(request, settings)["attachments"]
        deployment = next(a for a in attachments if a["kind"] == "Deployment")
        name = deployment["metadata"]["name"]
        service = next(a for a in attachments if a["kind"] == "Service" and a["metadata"]["name"] == name)
        return deployment["spec"]["template"]["spec"]["containers"][0], service

    container, service = picker(HookSettings(picker_replicas=3, cluster_domain="example.org"))
    assert service["spec"]["clusterIP"] == "None"  # its name resolves to every ready replica
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    args = container["args"]
    assert args[args.index("--load-exchange-peers") + 1] == f"{name}.{namespace}.svc.example.org:9005"
    assert {"name": "load-exchange", "containerPort": 9005, "protocol": "UDP"} in container["ports"]
    container, _ = picker(HookSettings(picker_replicas=1))
    assert "--load-exchange-peers" not in container["args"]
    assert all(port["protocol"] == "TCP" for port in container["ports"])


def test_unused_pool_gets_no_endpoints_service():
    request = cases.all_cases()["inferencepools/sync/unreferenced-stale-entry"]
    assert inferencepool.sync(request, HookSettings())["attachments"] == []


def test_errors_are_json_without_tracebacks():
    app = create_app()

    def broken():
        raise RuntimeError("secret internals")

    app.add_url_rule("/broken", "broken", broken, methods=["POST"])
    client = app.test_client()
    assert client.post("/gateways/sync", data=b"{not json").status_code == 400
    assert (
        client.post("/gateways/sync", data=b"[1, 2]").get_json()["error"]["message"]
        == "request body: expected a JSON object, got an array"
    )
    assert client.get("/gateways/sync").status_code == 405
    assert client.post("/nowhere", data=b"{}").get_json()["error"]["code"] == 404
    response = client.post("/broken", data=b"{}")
    assert response.status_code == 500
    assert b"secret internals" not in response.data and b"Traceback" not in response.data
    assert response.get_json()["error"]["type"] == "internal_error"


def test_request_over_the_size_limit_is_refused_quickly():
    client = create_app(max_request_bytes=1024 * 1024).test_client()
    body = b'{"parent": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    started = time.perf_counter()
    response = client.post("/gateways/sync", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == 413
    assert time.perf_counter() - started < 1.0


def test_settings_file_errors_name_the_field(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("envoyReplicas: -1\nbogus: 1\n")
    with pytest.raises(SettingsError) as error:
        load_settings(path)
    assert "envoyReplicas" in str(error.value) and "bogus" in str(error.value)
    path.write_text("envoyImage: envoyproxy/envoy:v1.41.0\ngatewayServiceType: ClusterIP\n")
    settings = load_settings(path)
    assert settings.envoy_image == "envoyproxy/envoy:v1.41.0" and settings.gateway_service_type == "ClusterIP"
    assert envoy.options(settings).endpoints == "dns"


def test_invalid_gateway_class_of_ours_is_not_accepted_and_names_the_field():
    request = copy.deepcopy(cases.all_cases()["gatewayclasses/sync/ours"])
    request["object"]["spec"]["description"] = "d" * 65
    response = gatewayclass.sync(request, HookSettings())
    [cond] = response["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Accepted", "False", "InvalidParameters")
    assert cond["message"].startswith("spec.description: ")
    assert response["labels"] == {"poolgate.dev/gateway-class": "true"}


@pytest.mark.parametrize("case", SYNC_CASES)
def test_writes_of_shared_status_ask_for_a_resync_that_bounds_a_dropped_write(case, client):
    """HTTPRoute and InferencePool status is shared: a write Metacontroller drops on a conflict is redone at the
    requested resync (30 s). Responses leaving status alone, and Gateway/GatewayClass status (poolgate's alone),
    ask for none beyond the controllers' periodic resync."""
    response = post(client, case, cases.all_cases()[case])
    kind = case.removeprefix("envoy-gateway/").split("/")[0]
    shared = kind in ("httproutes", "inferencepools") and response["status"] is not None
    assert response.get("resyncAfterSeconds") == (SHARED_STATUS_RESYNC_SECONDS if shared else None)
    assert SHARED_STATUS_RESYNC_SECONDS == 30


@pytest.mark.parametrize("case", [c for c in sorted(cases.all_cases()) if "/customize/" in c and "malformed" not in c])
def test_reference_grants_are_asked_in_the_configured_version(case):
    """A cluster serving ReferenceGrant only as v1beta1 gets rules naming v1beta1, and nothing else changes."""
    hook = HOOKS[hook_path(case)]
    request = cases.all_cases()[case]
    v1 = hook(request, HookSettings())["relatedResources"]
    v1beta1 = hook(request, HookSettings(reference_grant_version="v1beta1"))["relatedResources"]
    grants = [r for r in v1 if r["resource"] == "referencegrants"]
    assert {r["apiVersion"] for r in grants} <= {"gateway.networking.k8s.io/v1"}
    assert [r for r in v1beta1 if r["resource"] == "referencegrants"] == [
        {**r, "apiVersion": "gateway.networking.k8s.io/v1beta1"} for r in grants
    ]
    assert [r for r in v1beta1 if r["resource"] != "referencegrants"] == [
        r for r in v1 if r["resource"] != "referencegrants"
    ]


def test_rewrites_are_asked_in_exactly_the_versions_the_installed_crds_serve():
    """A related rule naming a version the cluster does not serve fails every sync: the Gateway hook asks
    InferenceModelRewrites in every version that crds/ (the chart's crds/) serves, and in no other."""
    served = set()
    for crd in (REPO / "helm" / "poolgate" / "crds").glob("*_inferencemodelrewrites.yaml"):
        spec = yaml.safe_load(crd.read_text())["spec"]
        served |= {f"{spec['group']}/{v['name']}" for v in spec["versions"] if v["served"]}
    rules = gateway.customize(cases.all_cases()["gateways/customize/all-namespaces"], HookSettings())
    asked = [r for r in rules["relatedResources"] if r["resource"] == "inferencemodelrewrites"]
    assert {r["apiVersion"] for r in asked} == served == {"inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2"}
    assert all(r["labelSelector"] == {} and "namespace" not in r for r in asked)  # pools of every namespace


def test_only_managed_pickers_without_rewrites_or_replicas_observe_responses_apart_from_the_pick():
    """The related objects Metacontroller selects with the Gateway's customize rules bring the InferenceModelRewrites
    along; the observer is on for exactly the managed pools no rewrite names, and only with one picker replica."""
    world = cases.managed_pickers_world()
    parent = cases.gateway("gw-m", [cases.listener("http", 8080)])
    objects = [*world, cases.pool("elsewhere", [8000], None), parent]  # an object the rules must not need

    def answer(settings: HookSettings, cluster: list[dict]) -> dict[str, bool]:
        found = related(gateway.customize, parent, cluster, settings)
        return observed_pools(gateway.sync(related_sync_request("poolgate-gateways", parent, found), settings))

    assert answer(HookSettings(), objects) == {
        "default/observed": True,  # poolgate's picker, one replica, responses left alone
        "default/renamed": False,  # an llm-d.ai rewrite: the picker maps the model name back in the body
        "default/aliased": False,  # an inference.networking.x-k8s.io rewrite, likewise
        "default/own": False,  # the user's picker may be upstream's, which knows no pick id
    }
    assert not any(answer(HookSettings(picker_replicas=2), objects).values())  # Envoy balances the calls apart
    unnamed = [o for o in objects if o["metadata"]["name"] != "renamed-canary"]  # the canary is over
    assert answer(HookSettings(), unnamed)["default/renamed"] is True
