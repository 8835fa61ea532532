"""Removing poolgate's DecoratorControllers cleanly (the Helm chart's pre-delete hook Job runs this module).

Metacontroller keeps the finalizer `metacontroller.io/decoratorcontroller-<controller>` on objects a controller with
a finalize hook decorates (poolgate's GatewayClasses), and deleting the controller leaves it there: the class would
stay Terminating after `helm uninstall`, and a later install would collide with it. The order matters:

1. delete the DecoratorControllers and wait until they are gone: Metacontroller stops syncing them, so nothing can
   put a finalizer back;
2. remove poolgate's finalizers from every object of the resources the controllers watched, with a JSON patch that
   tests the observed list first (a concurrent change makes the patch fail and the object is read again);
3. repeat step 2 until a pass finds nothing for `settle` seconds (a sync already in flight when the controller was
   deleted may still add one)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from poolgate import logs

FINALIZER_PREFIX = "metacontroller.io/decoratorcontroller-"
CONTROLLER_API = ("metacontroller.k8s.io", "v1alpha1", "decoratorcontrollers")
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    """A custom resource by group, version and plural, written `group/version/plural`."""

    group: str
    version: str
    plural: str

    @classmethod
    def parse(cls, text: str) -> Resource:
        """`gateway.networking.k8s.io/v1/gateways` -> Resource; ValueError for anything else."""
        parts = text.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{text!r}: expected group/version/plural of a custom resource")
        return cls(*parts)


class Conflict(Exception):
    """The object changed since it was read (its finalizers are not what the patch tested)."""


class Cluster(Protocol):
    """The few API calls the clean-up makes."""

    def delete_controller(self, name: str) -> None: ...
    def controller_exists(self, name: str) -> bool: ...
    def list_objects(self, resource: Resource) -> list[dict]: ...
    def patch_object(self, resource: Resource, obj: dict, patch: list[dict]) -> None: ...


def finalizer_names(controllers: Iterable[str]) -> set[str]:
    """The finalizers Metacontroller puts on objects for these DecoratorControllers."""
    return {FINALIZER_PREFIX + name for name in controllers}


def finalizer_patch(obj: dict, remove: set[str]) -> list[dict] | None:
    """A JSON patch dropping `remove` from the object's finalizers, guarded by a test of the observed list; None
    when the object carries none of them."""
    observed = list(obj.get("metadata", {}).get("finalizers") or [])
    kept = [name for name in observed if name not in remove]
    if kept == observed:
        return None
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": observed},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]


def remove_finalizers(cluster: Cluster, resources: list[Resource], remove: set[str]) -> int:
    """One pass over every object of `resources`; the number of objects whose finalizers were changed."""
    changed = 0
    for resource in resources:
        for obj in cluster.list_objects(resource):
            patch = finalizer_patch(obj, remove)
            if patch is None:
                continue
            try:
                cluster.patch_object(resource, obj, patch)
            except Conflict:
                continue  # read again on the next pass
            changed += 1
    return changed


def uninstall(
    cluster: Cluster,
    controllers: list[str],
    resources: list[Resource],
    settle: float = 10.0,
    timeout: float = 240.0,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Delete the controllers, then remove their finalizers until none comes back for `settle` seconds; the number
    of objects released. Raises TimeoutError past `timeout` seconds."""
    deadline = clock() + timeout
    for name in controllers:
        cluster.delete_controller(name)
    while any(cluster.controller_exists(name) for name in controllers):
        _wait(deadline, poll, clock, sleep, "the DecoratorControllers to be deleted")
    remove = finalizer_names(controllers)
    released = 0
    quiet_since = clock()
    while clock() - quiet_since < settle:
        changed = remove_finalizers(cluster, resources, remove)
        released += changed
        if changed:
            quiet_since = clock()
        _wait(deadline, poll, clock, sleep, "poolgate's finalizers to stay removed")
    return released


def _wait(deadline: float, poll: float, clock: Callable[[], float], sleep: Callable[[float], None], what: str) -> None:
    if clock() >= deadline:
        raise TimeoutError(f"gave up waiting for {what}")
    sleep(poll)


class KubernetesCluster:
    """Cluster through the Kubernetes API, with the pod's service account (or the local kubeconfig)."""

    def __init__(self) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.api = client.CustomObjectsApi()
        self.errors = client.exceptions.ApiException

    def delete_controller(self, name: str) -> None:
        try:
            self.api.delete_cluster_custom_object(*CONTROLLER_API, name)
        except self.errors as error:
            if error.status != 404:
                raise

    def controller_exists(self, name: str) -> bool:
        try:
            self.api.get_cluster_custom_object(*CONTROLLER_API, name)
        except self.errors as error:
            if error.status == 404:
                return False
            raise
        return True

    def list_objects(self, resource: Resource) -> list[dict]:
        try:
            listing = self.api.list_cluster_custom_object(resource.group, resource.version, resource.plural)
        except self.errors as error:
            if error.status == 404:  # the resource is not served (its CRD is not installed): nothing to release
                return []
            raise
        return list(listing.get("items", [])) if isinstance(listing, dict) else []

    def patch_object(self, resource: Resource, obj: dict, patch: list[dict]) -> None:
        metadata = obj["metadata"]
        where = (resource.group, resource.version)
        try:
            if metadata.get("namespace"):
                self.api.patch_namespaced_custom_object(
                    *where, metadata["namespace"], resource.plural, metadata["name"], patch, _content_type=JSON_PATCH
                )
            else:
                self.api.patch_cluster_custom_object(
                    *where, resource.plural, metadata["name"], patch, _content_type=JSON_PATCH
                )
        except self.errors as error:
            if error.status in (404, 409, 422):  # gone, or the tested list changed
                raise Conflict(metadata["name"]) from None
            raise


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m hooks.uninstall`."""
    parser = argparse.ArgumentParser(prog="python -m hooks.uninstall", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--controller", action="append", required=True, help="a DecoratorController to remove (repeatable)"
    )
    parser.add_argument(
        "--resource",
        action="append",
        type=Resource.parse,
        default=[],
        metavar="GROUP/VERSION/PLURAL",
        help="a resource whose objects may carry the controllers' finalizers (repeatable)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="done once no finalizer came back for this long (default: 10)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=240.0,
        metavar="SECONDS",
        help="give up (exit 1) after this long (default: 240)",
    )
    logs.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the clean-up against the cluster; 0 when done, 1 on timeout."""
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format == "json")
    try:
        released = uninstall(KubernetesCluster(), args.controller, args.resource, args.settle, args.timeout)
    except TimeoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"removed {len(args.controller)} DecoratorControllers; released {released} objects from their finalizers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
