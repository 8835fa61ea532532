"""The EnvoyPatchPolicy applied to the xDS Envoy Gateway builds from the generated objects (egxds.py): every patch
names a cluster Envoy Gateway builds, and the real Envoy accepts the configuration before and after the patches."""

from __future__ import annotations

import pytest

from poolgate.egtarget import EnvoyGatewayOptions, translate_envoy_gateway
from tests.envoy_gateway.cases import MODEL_ROUTER, model_routing, split_route, two_pools
from tests.envoy_gateway.egxds import EnvoyGatewayShape


@pytest.fixture
def shape(tmp_path):
    inputs = two_pools()
    return EnvoyGatewayShape(translate_envoy_gateway(inputs).objects(), inputs, tmp_path, "127.0.0.1", 19000)


def lb_policy(cluster: dict) -> dict:
    return cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]


def test_the_patches_turn_each_pool_cluster_into_poolgates_override_host(shape):
    listeners, clusters = shape.resources()
    before = {c["name"]: c for c in clusters}
    _, patched = shape.patched(listeners, [dict(c) for c in clusters])
    after = {c["name"]: c for c in patched}
    pools = ["httproute/default/models-poolgate/rule/0", "httproute/default/models-poolgate/rule/1"]
    for name in pools:
        assert lb_policy(before[name])["typed_config"]["override_host_sources"] == [
            {"header": "x-gateway-destination-endpoint"}
        ]  # Envoy Gateway's own endpoint override
        config = lb_policy(after[name])["typed_config"]
        assert config["override_host_sources"] == [
            {"header": "x-gateway-destination-endpoint"},
            {"metadata": {"key": "envoy.lb", "path": [{"key": "x-gateway-destination-endpoint"}]}},
        ]
        assert config["selected_host_key"] == {
            "key": "envoy.lb",
            "path": [{"key": "x-gateway-destination-endpoint-served"}],
        }
        assert {k: v for k, v in after[name].items() if k != "load_balancing_policy"} == {
            k: v for k, v in before[name].items() if k != "load_balancing_policy"
        }
    untouched = set(before) - set(pools)
    assert "httproute/default/models-poolgate/rule/2" in untouched
    assert all(after[name] == before[name] for name in untouched)


@pytest.mark.parametrize("patch", [False, True], ids=["as-envoy-gateway-builds-it", "patched"])
def test_envoy_accepts_the_configuration(shape, envoy_validate, patch):
    envoy_validate(shape.bootstrap(patch=patch))


def test_a_patch_for_a_cluster_envoy_gateway_does_not_build_is_caught(shape):
    shape.objects = [dict(o) for o in shape.objects]
    patch = next(o for o in shape.objects if o["kind"] == "EnvoyPatchPolicy")
    patch["spec"] = {
        **patch["spec"],
        "jsonPatches": [{**patch["spec"]["jsonPatches"][0], "name": "httproute/default/models/rule/0"}],
    }
    listeners, clusters = shape.resources()
    with pytest.raises(ValueError):
        shape.patched(listeners, clusters)


def test_a_split_rule_becomes_weighted_clusters_each_enabling_its_pools_picker(tmp_path, envoy_validate):
    inputs = split_route()
    shape = EnvoyGatewayShape(translate_envoy_gateway(inputs).objects(), inputs, tmp_path, "127.0.0.1", 19000)
    bootstrap = shape.bootstrap(patch=True)
    envoy_validate(bootstrap)
    (listener,) = bootstrap["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = {r["name"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    action = routes["httproute/default/route-poolgate/rule/0/match/0/*"]["route"]
    assert "cluster" not in action
    assert [
        (c["name"], c["weight"], list(c["typed_per_filter_config"])) for c in action["weighted_clusters"]["clusters"]
    ] == [
        (
            "httproute/default/route-poolgate/rule/3",
            80,
            ["envoy.filters.http.ext_proc/envoyextensionpolicy/default/route-poolgate-a/extproc/0"],
        ),
        (
            "httproute/default/route-poolgate/rule/4",
            20,
            ["envoy.filters.http.ext_proc/envoyextensionpolicy/default/route-poolgate-b/extproc/0"],
        ),
    ]
    assert {f["name"] for f in hcm["http_filters"]} >= {
        name for c in action["weighted_clusters"]["clusters"] for name in c["typed_per_filter_config"]
    }


def test_model_routing_orders_the_model_router_first_and_envoy_accepts_it(tmp_path, envoy_validate):
    inputs = model_routing()
    objects = translate_envoy_gateway(inputs, EnvoyGatewayOptions(model_router=MODEL_ROUTER)).objects()
    bootstrap = EnvoyGatewayShape(objects, inputs, tmp_path, "127.0.0.1", 19000).bootstrap(patch=True)
    envoy_validate(bootstrap)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    ext_procs = [f["name"] for f in hcm["http_filters"] if "ext_proc" in f["name"]]
    prefix = "envoy.filters.http.ext_proc/envoyextensionpolicy/default/route-poolgate-model-routing/extproc/"
    assert [n for n in ext_procs if n.startswith(prefix)] == [prefix + "0", prefix + "1", prefix + "2"]
    routes = {r["name"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    a_route = routes["httproute/default/route-poolgate/rule/0/match/0/*"]["typed_per_filter_config"]
    assert a_route[prefix + "2"]["disabled"] is True and a_route[prefix + "1"]["config"] == {}
