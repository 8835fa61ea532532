"""The narrowed related rules lose nothing: on a cluster where the hooks have labelled routes, Gateways and classes,
each pool's sync gets the same answer from the objects its rules select as from every object of the cluster."""

from __future__ import annotations

import copy

from hooks import inferencepool
from hooks.httproute import pool_label
from hooks.settings import HookSettings
from poolgate.api.contract import POOL_LABEL_PREFIX
from tests.hooks import cases
from tests.hooks.related_sizes import HOOKS, build_cluster, converge, related, sync_request


def test_each_pool_gets_the_same_answer_from_its_related_objects_as_from_the_whole_cluster():
    settings = HookSettings()
    objects = build_cluster(namespaces=2, routes=8, pools=4, pods=4)
    objects.append(cases.gateway("theirs", [cases.listener("http", 80)], class_name="other", ns="team-0"))
    theirs = {"backendRefs": [cases.pool_ref("pool-0")]}
    objects.append(cases.route("their-route", [{"name": "theirs"}], [theirs], ns="team-0"))
    converge(objects, settings)
    everything = [o for o in objects if o["kind"] != "Pod"]
    controller = HOOKS["InferencePool"][0]
    for pool in [o for o in objects if o["kind"] == "InferencePool"]:
        found = related(inferencepool.customize, pool, objects, settings)
        namespace, name = pool["metadata"]["namespace"], pool["metadata"]["name"]
        routes = sorted(o["metadata"]["name"] for o in found if o["kind"] == "HTTPRoute")
        assert routes == sorted(f"route-{r}" for r in range(4) if f"pool-{r % 2}" == name)  # not their-route
        assert {o["metadata"]["name"] for o in found if o["kind"] == "Gateway"} == {"gw"}
        narrowed = inferencepool.sync(sync_request(controller, pool, found), settings)
        whole = inferencepool.sync(sync_request(controller, pool, [o for o in everything if o is not pool]), settings)
        assert narrowed == whole and narrowed["status"] is not None, f"{namespace}/{name}"


def test_routes_carry_labels_of_the_pools_they_route_to_through_a_poolgate_gateway_only():
    settings = HookSettings()
    objects = build_cluster(namespaces=1, routes=2, pools=2, pods=0)
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    route["metadata"]["labels"] = {pool_label("team-0", "gone"): "true", "app": "chat"}
    converge(objects, settings)
    assert route["metadata"]["labels"] == {pool_label("team-0", "pool-0"): "true", "app": "chat"}
    other = copy.deepcopy(route)
    other["spec"]["parentRefs"] = [{"name": "not-poolgate"}]
    controller, customize, sync = HOOKS["HTTPRoute"]
    answer = sync(sync_request(controller, other, related(customize, other, objects, settings)), settings)
    assert answer["labels"] == {pool_label("team-0", "pool-0"): None}
    assert all(key.startswith(POOL_LABEL_PREFIX) for key in answer["labels"])
