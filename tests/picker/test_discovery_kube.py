"""Kubernetes discovery: the object store on recorded list/watch payloads (pure), and the list-then-watch loop of
the real kubernetes client against a tiny fake API server on loopback."""

import asyncio
import copy

from kubernetes.client import ApiClient, Configuration

from picker.discovery.kube import KubeSource, ObjectStore, Resource, resources_for
from tests.support.kubeapi import FakeApiServer

POOLS = Resource("inference.networking.k8s.io/v1", "InferencePool", "inferencepools", "default")
PODS = Resource("v1", "Pod", "pods", "default")
OBJECTIVES = Resource("llm-d.ai/v1alpha2", "InferenceObjective", "inferenceobjectives", "default")
LEGACY_OBJECTIVES = Resource(
    "inference.networking.x-k8s.io/v1alpha2", "InferenceObjective", "inferenceobjectives", "default"
)

POOL = {
    "apiVersion": "inference.networking.k8s.io/v1",
    "kind": "InferencePool",
    "metadata": {"name": "pool", "namespace": "default", "resourceVersion": "1"},
    "spec": {"selector": {"matchLabels": {"app": "pool"}}, "targetPorts": [{"number": 8000}]},
}


def pod(name: str, ip: str, ready: bool = True, version: str = "2") -> dict:
    # as the API server lists them: no kind/apiVersion on list items
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "pool"}, "resourceVersion": version},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


WAIT_S = 30  # a deadline for what must happen, not a measure of speed (threads start slowly on a busy machine)


def keys(view) -> list[str]:
    return [e.key for e in view.pools["default/pool"].endpoints]


def test_resources_cover_both_objective_groups_per_pool_namespace_and_the_router_configmaps():
    resources = resources_for(["a/one", "a/two", "b/three"], model_router=True)
    assert sorted({r.namespace for r in resources if r.namespace}) == ["a", "b"]
    in_a = {(r.api_version, r.plural) for r in resources if r.namespace == "a"}
    assert in_a == {
        ("inference.networking.k8s.io/v1", "inferencepools"),
        ("v1", "pods"),
        ("inference.networking.x-k8s.io/v1alpha2", "inferenceobjectives"),
        ("llm-d.ai/v1alpha2", "inferenceobjectives"),
        ("inference.networking.x-k8s.io/v1alpha2", "inferencemodelrewrites"),
        ("llm-d.ai/v1alpha2", "inferencemodelrewrites"),
    }
    (configmaps,) = [r for r in resources if r.kind == "ConfigMap"]
    assert configmaps.namespace is None and configmaps.label_selector == "inference.networking.k8s.io/bbr-managed=true"
    assert not any(r.kind == "ConfigMap" for r in resources_for(["a/one"], model_router=False))


def test_store_applies_lists_and_recorded_watch_events():
    store = ObjectStore()
    store.replace(POOLS, [POOL])
    store.replace(PODS, [pod("p0", "10.0.0.1"), pod("p1", "10.0.0.2", ready=False)])
    store.missing(LEGACY_OBJECTIVES)
    assert keys(store.view(["default/pool"])) == ["10.0.0.1:8000"]

    ready = {"type": "MODIFIED", "object": {"apiVersion": "v1", "kind": "Pod", **pod("p1", "10.0.0.2", version="3")}}
    assert store.apply(PODS, ready)
    assert keys(store.view(["default/pool"])) == ["10.0.0.1:8000", "10.0.0.2:8000"]
    terminating = copy.deepcopy(ready)
    terminating["object"]["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert store.apply(PODS, terminating)
    assert keys(store.view(["default/pool"])) == ["10.0.0.1:8000"]
    assert store.apply(PODS, {"type": "DELETED", "object": pod("p0", "10.0.0.1")})
    assert not store.apply(PODS, {"type": "DELETED", "object": pod("gone", "10.0.0.9")})
    assert not store.apply(PODS, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    assert keys(store.view(["default/pool"])) == []

    objective = {
        "type": "ADDED",
        "object": {
            "metadata": {"name": "batch", "namespace": "default"},
            "spec": {"priority": -2, "poolRef": {"name": "pool"}},
        },
    }
    assert store.apply(OBJECTIVES, objective)
    assert store.view(["default/pool"]).pools["default/pool"].priorities == {"batch": -2}
    invalid = {
        "type": "MODIFIED",
        "object": {"metadata": {"name": "batch", "namespace": "default"}, "spec": {"priority": "high"}},
    }
    assert store.apply(OBJECTIVES, invalid)  # an object turning invalid leaves the store
    assert store.view(["default/pool"]).pools["default/pool"].priorities == {}
    assert store.apply(POOLS, {"type": "DELETED", "object": POOL})
    assert not store.view(["default/pool"]).pools["default/pool"].exists
    assert store.listed(LEGACY_OBJECTIVES) and not store.listed(Resource("v1", "Pod", "pods", "elsewhere"))


async def test_the_watch_loop_lists_then_follows_events_with_the_real_kubernetes_client():
    pods = "/api/v1/namespaces/default/pods"
    async with FakeApiServer() as api:
        api.add("/apis/inference.networking.k8s.io/v1/namespaces/default/inferencepools", POOL)
        api.add(pods, pod("p0", "10.0.0.1"))
        api.add(
            "/apis/llm-d.ai/v1alpha2/namespaces/default/inferenceobjectives",
            {
                "metadata": {"name": "batch", "namespace": "default"},
                "spec": {"priority": -1, "poolRef": {"name": "pool"}},
            },
        )
        api.add("/apis/llm-d.ai/v1alpha2/namespaces/default/inferencemodelrewrites")
        api.add("/api/v1/configmaps")  # the x-k8s.io group CRDs are not installed: 404
        client = ApiClient(Configuration(host=f"http://127.0.0.1:{api.port}"))
        source = KubeSource(
            ["default/pool"], model_router=True, client=client, settle=0.01, watch_timeout=30, missing_retry=60
        )
        views: asyncio.Queue = asyncio.Queue()

        async def publish(view):
            views.put_nowait(view)

        task = asyncio.create_task(source.run(publish))
        try:
            first = await asyncio.wait_for(views.get(), WAIT_S)
            assert keys(first) == ["10.0.0.1:8000"]
            assert first.pools["default/pool"].priorities == {"batch": -1}

            # events sent before a watch is open reach it too (it starts from its list's resourceVersion)
            await api.send(pods, "ADDED", {"apiVersion": "v1", "kind": "Pod", **pod("p1", "10.0.0.2")})
            assert keys(await asyncio.wait_for(views.get(), WAIT_S)) == ["10.0.0.1:8000", "10.0.0.2:8000"]
            await api.send(pods, "DELETED", {"apiVersion": "v1", "kind": "Pod", **pod("p0", "10.0.0.1")})
            assert keys(await asyncio.wait_for(views.get(), WAIT_S)) == ["10.0.0.2:8000"]
            await api.send(
                "/api/v1/configmaps",
                "ADDED",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": "adapters",
                        "namespace": "x",
                        "labels": {"inference.networking.k8s.io/bbr-managed": "true"},
                    },
                    "data": {"baseModel": "llama", "adapters": "- sql-lora"},
                },
            )
            assert (await asyncio.wait_for(views.get(), WAIT_S)).adapter_bases == {"sql-lora": "llama"}
            assert any("labelSelector=inference.networking.k8s.io" in w for w in api.watch_requests)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
