"""Pool state from the Kubernetes API: list-then-watch of the objects the picker needs.

Watched, in each served pool's namespace: InferencePools (`inference.networking.k8s.io/v1`), Pods, and
InferenceObjectives and InferenceModelRewrites in both groups (`inference.networking.x-k8s.io/v1alpha2`,
`llm-d.ai/v1alpha2`); for the model router, LoRA ConfigMaps (label `inference.networking.k8s.io/bbr-managed=true`) in
every namespace. Each (resource, namespace) has a thread running the kubernetes client's list and watch and handing
what it gets to the event loop; `ObjectStore` applies lists and watch events (pure, tested on recorded events) and
`build_view` turns the store into a `PickerView`. A resource whose CRD is not installed counts as empty (and is
retried every `missing_retry` seconds), so either objective group may be missing. The view is published once every
resource has been listed (that is the readiness signal) and again after changes, coalesced over `settle` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from picker.discovery.view import ADAPTERS_CONFIGMAP_LABEL, PickerView, build_view
from poolgate.api import InvalidObjects, KubeObject, parse_object
from poolgate.api.inference import OBJECTIVE_API_VERSIONS

log = logging.getLogger("poolgate.picker.discovery")

Publish = Callable[[PickerView], Awaitable[None]]


@dataclass(frozen=True)
class Resource:
    """One kind of object watched in one namespace (None: every namespace)."""

    api_version: str
    kind: str
    plural: str
    namespace: str | None
    label_selector: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def __str__(self) -> str:
        where = self.namespace or "all namespaces"
        return f"{self.plural}.{self.api_version} in {where}"


def resources_for(pools: Sequence[str], model_router: bool) -> list[Resource]:
    """What to watch for these pools (`namespace/name`) and, with the model router, the LoRA ConfigMaps."""
    out = []
    for namespace in sorted({key.partition("/")[0] for key in pools}):
        out.append(Resource("inference.networking.k8s.io/v1", "InferencePool", "inferencepools", namespace))
        out.append(Resource("v1", "Pod", "pods", namespace))
        for api_version in OBJECTIVE_API_VERSIONS:
            out.append(Resource(api_version, "InferenceObjective", "inferenceobjectives", namespace))
            out.append(Resource(api_version, "InferenceModelRewrite", "inferencemodelrewrites", namespace))
    if model_router:
        out.append(Resource("v1", "ConfigMap", "configmaps", None, f"{ADAPTERS_CONFIGMAP_LABEL}=true"))
    return out


class ObjectStore:
    """The current objects of every watched resource, kept typed (raw for ConfigMaps)."""

    def __init__(self) -> None:
        self._objects: dict[Resource, dict[tuple[str, str], Any]] = {}

    def replace(self, resource: Resource, items: Iterable[Mapping[str, Any]]) -> None:
        """Take the full list of a resource (list items carry no kind/apiVersion; the resource supplies them)."""
        current: dict[tuple[str, str], Any] = {}
        for raw in items:
            raw = {"apiVersion": resource.api_version, "kind": resource.kind, **raw}
            parsed = self._parse(resource, raw)
            if parsed is not None:
                current[_key(raw)] = parsed
        self._objects[resource] = current

    def apply(self, resource: Resource, event: Mapping[str, Any]) -> bool:
        """Apply one watch event (ADDED, MODIFIED, DELETED; BOOKMARK changes nothing); returns whether the store
        changed."""
        kind = event.get("type")
        raw = event.get("object")
        if kind not in ("ADDED", "MODIFIED", "DELETED") or not isinstance(raw, Mapping):
            return False
        objects = self._objects.setdefault(resource, {})
        key = _key(raw)
        if kind == "DELETED":
            return objects.pop(key, None) is not None
        parsed = self._parse(resource, {"apiVersion": resource.api_version, "kind": resource.kind, **raw})
        if parsed is None:
            return objects.pop(key, None) is not None
        objects[key] = parsed
        return True

    def missing(self, resource: Resource) -> None:
        """The resource cannot be listed (its CRD is not installed): it holds nothing."""
        self._objects[resource] = {}

    def listed(self, resource: Resource) -> bool:
        """Whether the resource has been listed (or found missing) at least once."""
        return resource in self._objects

    def view(self, pools: Sequence[str]) -> PickerView:
        """The picker's view of the stored objects."""
        typed: list[KubeObject] = []
        configmaps: list[Mapping[str, Any]] = []
        for resource, objects in self._objects.items():
            if resource.kind == "ConfigMap":
                configmaps.extend(objects.values())
            else:
                typed.extend(objects.values())
        return build_view(typed, configmaps, pools)

    @staticmethod
    def _parse(resource: Resource, raw: Mapping[str, Any]) -> Any:
        if resource.kind == "ConfigMap":
            return dict(raw)
        try:
            return parse_object(dict(raw), f"{resource}")
        except InvalidObjects as error:
            log.warning("ignoring an invalid object", extra={"problems": [str(p) for p in error.problems]})
            return None


def _key(raw: Mapping[str, Any]) -> tuple[str, str]:
    metadata = raw.get("metadata") or {}
    return metadata.get("namespace") or "", metadata.get("name") or ""


class KubeSource:
    """Lists and watches the resources of the served pools and publishes views (see the module docstring)."""

    def __init__(
        self,
        pools: Sequence[str],
        model_router: bool,
        client=None,
        *,
        settle: float = 0.05,
        watch_timeout: int = 300,
        missing_retry: float = 30.0,
    ) -> None:
        self.pools = list(pools)
        self.resources = resources_for(self.pools, model_router)
        self.store = ObjectStore()
        self._client = client
        self.settle = settle
        self.watch_timeout = watch_timeout
        self.missing_retry = missing_retry
        self._stopped = threading.Event()

    async def run(self, publish: Publish) -> None:
        """Watch until cancelled; publishes the first view once every resource has been listed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        client = self._client or api_client()

        def deliver(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        for resource in self.resources:
            threading.Thread(
                target=self._watch_loop, args=(client, resource, deliver), daemon=True, name=f"watch {resource}"
            ).start()
        synced = False
        try:
            while True:
                changed = self._handle(await queue.get())
                await asyncio.sleep(self.settle)
                while not queue.empty():
                    changed |= self._handle(queue.get_nowait())
                if not synced and all(self.store.listed(r) for r in self.resources):
                    synced = True
                    changed = True
                if synced and changed:
                    await publish(self.store.view(self.pools))
        finally:
            self._stopped.set()

    def _handle(self, item) -> bool:
        action, resource, payload = item
        if action == "list":
            self.store.replace(resource, payload)
            return True
        if action == "missing":
            self.store.missing(resource)
            return True
        return self.store.apply(resource, payload)

    def _watch_loop(self, client, resource: Resource, deliver) -> None:
        """List, then watch from the list's resourceVersion; relist on expiry; runs in its own thread."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        list_function, arguments = _list_function(client, resource)
        backoff = 1.0
        while not self._stopped.is_set():
            try:
                response = list_function(**arguments, _preload_content=False)
                listing = orjson.loads(response.data)
                deliver(("list", resource, listing.get("items") or []))
                version = (listing.get("metadata") or {}).get("resourceVersion")
                backoff = 1.0
                while not self._stopped.is_set():
                    watcher = watch.Watch()
                    for event in watcher.stream(
                        list_function,
                        **arguments,
                        resource_version=version,
                        timeout_seconds=self.watch_timeout,
                        deserialize=False,
                        allow_watch_bookmarks=True,
                    ):
                        version = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion", version)
                        deliver(("event", resource, event))
                        if self._stopped.is_set():
                            watcher.stop()
                            return
            except ApiException as error:
                if error.status == 404:
                    log.warning(
                        "resource not served by the API server (CRD not installed?); treating it as empty",
                        extra={"resource": str(resource)},
                    )
                    deliver(("missing", resource, None))
                    self._stopped.wait(self.missing_retry)
                elif error.status == 410:
                    continue  # the watch expired: list again
                else:
                    log.warning(
                        "watch failed; retrying",
                        extra={"resource": str(resource), "status": error.status, "error": error.reason},
                    )
                    self._stopped.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
            except Exception as error:  # connection errors and the like: keep trying
                log.warning("watch failed; retrying", extra={"resource": str(resource), "error": repr(error)})
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 30.0)


def _list_function(client, resource: Resource):
    """The kubernetes client function that lists (and, with watch=True, watches) a resource, and its arguments."""
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    arguments: dict[str, str | None]
    if resource.api_version == "v1":
        core = CoreV1Api(client)
        if resource.namespace is None:
            function = getattr(core, f"list_{_singular(resource.kind)}_for_all_namespaces")
            arguments = {}
        else:
            function = getattr(core, f"list_namespaced_{_singular(resource.kind)}")
            arguments = {"namespace": resource.namespace}
    else:
        custom = CustomObjectsApi(client)
        function = custom.list_namespaced_custom_object
        arguments = {
            "group": resource.group,
            "version": resource.version,
            "namespace": resource.namespace,
            "plural": resource.plural,
        }
    if resource.label_selector:
        arguments["label_selector"] = resource.label_selector
    return function, arguments


def _singular(kind: str) -> str:
    return {"Pod": "pod", "ConfigMap": "config_map"}[kind]


def api_client(kubeconfig: str | None = None):
    """A Kubernetes API client: from `kubeconfig` when given, else the in-cluster service account, else the default
    kubeconfig."""
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    except (config.ConfigException, OSError) as error:
        raise ValueError(
            f"no Kubernetes configuration ({error}); run in a cluster, pass --kubeconfig, or read the "
            "pools from --objects-file"
        ) from None
    return client.ApiClient()
