"""The uninstall clean-up (hooks/uninstall.py) against a cluster in memory that behaves like Metacontroller: while a
DecoratorController with a finalize hook exists, every object it decorates gets its finalizer back."""

from __future__ import annotations

import copy

import pytest

from hooks.uninstall import Conflict, Resource, finalizer_patch, uninstall

CLASSES = Resource("gateway.networking.k8s.io", "v1", "gatewayclasses")
ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")
OURS = "metacontroller.io/decoratorcontroller-poolgate-gatewayclass-finalizer"
THEIRS = "gateway-exists-finalizer.gateway.networking.k8s.io"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class MetacontrollerCluster:
    """Objects with finalizers; a controller puts its finalizer back on GatewayClasses while it exists, and
    `late_syncs` more times after its deletion (syncs in flight)."""

    def __init__(self, objects: dict[Resource, list[dict]], controllers: set[str], late_syncs: int = 0) -> None:
        self.objects = objects
        self.controllers = set(controllers)
        self.late_syncs = late_syncs
        self.conflicts = 0
        self.log: list[str] = []

    def delete_controller(self, name: str) -> None:
        self.log.append(f"delete {name}")
        self.controllers.discard(name)

    def controller_exists(self, name: str) -> bool:
        return name in self.controllers

    def list_objects(self, resource: Resource) -> list[dict]:
        for obj in self.objects.get(resource, []) if resource == CLASSES else []:
            if obj["metadata"]["name"] != "poolgate":  # only poolgate's classes are decorated
                continue
            finalizers = obj["metadata"]["finalizers"]
            if OURS not in finalizers and (self.controllers or self.late_syncs > 0):
                self.late_syncs -= 0 if self.controllers else 1
                finalizers.append(OURS)
        return copy.deepcopy(self.objects.get(resource, []))

    def patch_object(self, resource: Resource, obj: dict, patch: list[dict]) -> None:
        self.log.append(f"patch {obj['metadata']['name']}")
        stored = next(o for o in self.objects[resource] if o["metadata"]["name"] == obj["metadata"]["name"])
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(obj["metadata"]["name"])
        test, replace = patch
        assert stored["metadata"]["finalizers"] == test["value"]
        stored["metadata"]["finalizers"] = replace["value"]


def gateway_class(name: str, *finalizers: str) -> dict:
    return {"metadata": {"name": name, "finalizers": list(finalizers)}}


def test_controllers_go_first_then_every_poolgate_finalizer_and_only_those():
    objects = {CLASSES: [gateway_class("poolgate", OURS, THEIRS), gateway_class("other", THEIRS)], ROUTES: []}
    cluster = MetacontrollerCluster(objects, {"poolgate-gatewayclass-finalizer", "poolgate-gateways"}, late_syncs=2)
    time = FakeTime()
    released = uninstall(
        cluster,
        ["poolgate-gatewayclass-finalizer", "poolgate-gateways"],
        [CLASSES, ROUTES],
        settle=5,
        clock=time.clock,
        sleep=time.sleep,
    )
    assert cluster.log[:2] == ["delete poolgate-gatewayclass-finalizer", "delete poolgate-gateways"]
    assert released == 3  # the finalizer, and twice more after syncs in flight put it back
    assert [o["metadata"]["finalizers"] for o in objects[CLASSES]] == [[THEIRS], [THEIRS]]


def test_a_conflicting_patch_is_retried_on_the_next_pass():
    objects = {CLASSES: [gateway_class("poolgate", OURS)]}
    cluster = MetacontrollerCluster(objects, set())
    cluster.conflicts = 1
    time = FakeTime()
    assert (
        uninstall(cluster, ["poolgate-gatewayclass-finalizer"], [CLASSES], settle=3, clock=time.clock, sleep=time.sleep)
        == 1
    )
    assert objects[CLASSES][0]["metadata"]["finalizers"] == []
    assert cluster.log == ["delete poolgate-gatewayclass-finalizer", "patch poolgate", "patch poolgate"]


def test_a_controller_that_is_never_deleted_times_out():
    class Stuck(MetacontrollerCluster):
        def delete_controller(self, name: str) -> None:
            pass

    time = FakeTime()
    with pytest.raises(TimeoutError, match="DecoratorControllers to be deleted"):
        uninstall(
            Stuck({}, {"poolgate-gateways"}), ["poolgate-gateways"], [], timeout=30, clock=time.clock, sleep=time.sleep
        )


def test_patch_tests_the_observed_list_and_keeps_other_finalizers():
    obj = gateway_class("poolgate", THEIRS, OURS)
    assert finalizer_patch(obj, {OURS}) == [
        {"op": "test", "path": "/metadata/finalizers", "value": [THEIRS, OURS]},
        {"op": "replace", "path": "/metadata/finalizers", "value": [THEIRS]},
    ]
    assert finalizer_patch(gateway_class("other", THEIRS), {OURS}) is None
    assert finalizer_patch({"metadata": {"name": "bare"}}, {OURS}) is None


@pytest.mark.parametrize("text", ["gateways", "v1/services", "a//b", "a/b/c/d"])
def test_resources_must_be_group_version_plural(text):
    with pytest.raises(ValueError, match="group/version/plural"):
        Resource.parse(text)
