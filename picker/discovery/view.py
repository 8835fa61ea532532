"""What the picker needs to know of the cluster, derived from objects by pure functions.

Both sources (the Kubernetes watch and the objects file) keep a set of typed objects (`poolgate.api`) plus the raw
LoRA ConfigMaps, and turn them into a `PickerView` with `build_view`: for every served pool its ready endpoints (the
translator's `Snapshot.pool_endpoints`: ready pods matching the selector x target ports, narrowed by the
active-ports annotations), the priorities of its InferenceObjectives, its InferenceModelRewrites, its fixed model list
(`poolgate.dev/models`) and scheduling profile (`poolgate.dev/scheduling-profile`); and, for the model router, which
LoRA adapter belongs to which base model (body-based routing ConfigMaps labelled
`inference.networking.k8s.io/bbr-managed: "true"` with `data.baseModel` and `data.adapters`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from picker.pool.objectives import ModelRewrite, rewrite_from_object
from picker.pool.state import EndpointSpec
from poolgate.api import InferenceModelRewrite, InferenceObjective, InferencePool, KubeObject
from poolgate.api.base import INFERENCE_GROUP
from poolgate.api.contract import MODELS_ANNOTATION, PROFILE_ANNOTATION
from poolgate.api.snapshot import Snapshot

log = logging.getLogger(__name__)

ADAPTERS_CONFIGMAP_LABEL = "inference.networking.k8s.io/bbr-managed"


def parse_pool_key(value: str) -> str:
    """Validate a `namespace/name` pool reference; ValueError if malformed."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"expected NAMESPACE/NAME, not {value!r}")
    return value


@dataclass(frozen=True)
class PoolView:
    """One served pool as discovery sees it; `exists` is False while the InferencePool object is missing."""

    key: str
    exists: bool = False
    endpoints: tuple[EndpointSpec, ...] = ()
    priorities: Mapping[str, int | None] = field(default_factory=dict)
    rewrites: tuple[ModelRewrite, ...] = ()
    models: frozenset[str] | None = None  # the pool's fixed model list; None: any model
    profile: str | None = None  # the scheduling profile the pool asks for

    @property
    def name(self) -> str:
        """The pool's name (without namespace)."""
        return self.key.partition("/")[2]


@dataclass(frozen=True)
class PickerView:
    """Every served pool, and the LoRA adapter -> base model map."""

    pools: Mapping[str, PoolView] = field(default_factory=dict)
    adapter_bases: Mapping[str, str] = field(default_factory=dict)


def build_view(
    objects: Iterable[KubeObject], configmaps: Iterable[Mapping[str, Any]] = (), pools: Sequence[str] | None = None
) -> PickerView:
    """The view of the given pools (`namespace/name`; None: every InferencePool among the objects)."""
    snapshot = Snapshot.of(objects)
    keys = list(pools) if pools is not None else [f"{ns}/{name}" for ns, name in sorted(snapshot.pools)]
    return PickerView({key: _pool_view(snapshot, key) for key in keys}, adapter_bases(configmaps))


def _pool_view(snapshot: Snapshot, key: str) -> PoolView:
    namespace, _, name = key.partition("/")
    pool = snapshot.pools.get((namespace, name))
    if pool is None:
        return PoolView(key)
    endpoints = tuple(
        EndpointSpec(pod.status.pod_ip, port, pod.name, dict(pod.metadata.labels))
        for pod, port in snapshot.pool_endpoints(pool)
        if pod.status.pod_ip  # ready pods always have one; the check narrows the type
    )
    priorities = {o.name: o.spec.priority for o in snapshot.objectives.values() if _refers_to(o, pool)}
    rewrites = []
    for rewrite in sorted((r for r in snapshot.rewrites.values() if _refers_to(r, pool)), key=lambda r: r.name):
        try:
            rewrites.append(rewrite_from_object(rewrite.to_json()))
        except ValueError as error:
            log.warning("ignoring a malformed InferenceModelRewrite", extra={"pool": key, "error": str(error)})
    annotations = pool.metadata.annotations
    models = annotations.get(MODELS_ANNOTATION)
    return PoolView(
        key,
        True,
        endpoints,
        priorities,
        tuple(rewrites),
        models=None if models is None else frozenset(m.strip() for m in models.split(",") if m.strip()),
        profile=annotations.get(PROFILE_ANNOTATION) or None,
    )


def _refers_to(obj: InferenceObjective | InferenceModelRewrite, pool: InferencePool) -> bool:
    ref = obj.spec.pool_ref
    return (
        obj.namespace == pool.namespace
        and ref.name == pool.name
        and ref.group == INFERENCE_GROUP
        and ref.kind == "InferencePool"
    )


def is_adapters_configmap(raw: Mapping[str, Any]) -> bool:
    """Whether a raw object is a body-based routing ConfigMap naming a base model and its LoRA adapters."""
    if raw.get("kind") != "ConfigMap" or raw.get("apiVersion") != "v1":
        return False
    labels = (raw.get("metadata") or {}).get("labels") or {}
    return labels.get(ADAPTERS_CONFIGMAP_LABEL) == "true"


def adapter_bases(configmaps: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """LoRA adapter -> base model, from the body-based routing ConfigMaps (`data.baseModel`, `data.adapters` a
    YAML list or one name per line). Unreadable entries are logged and skipped."""
    out: dict[str, str] = {}
    for raw in configmaps:
        data = raw.get("data") or {}
        base = str(data.get("baseModel") or "").strip()
        if not base:
            continue
        try:
            adapters = yaml.safe_load(data.get("adapters") or "") or []
        except yaml.YAMLError:
            adapters = None
        if isinstance(adapters, str):
            adapters = adapters.split()
        if not isinstance(adapters, list):
            name = (raw.get("metadata") or {}).get("name", "?")
            log.warning("ignoring the adapters of a ConfigMap: data.adapters is not a list", extra={"configmap": name})
            continue
        for adapter in adapters:
            if isinstance(adapter, str) and adapter.strip():
                out[adapter.strip()] = base
    return out
