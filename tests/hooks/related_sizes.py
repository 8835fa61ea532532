"""Related-object sets and request sizes of the hooks on a large cluster, printed as a table:

    python -m tests.hooks.related_sizes [--namespaces 10 --routes 1000 --pools 100 --pods 10000]

The cluster: N namespaces, each with a poolgate Gateway (one `Same` listener), its share of the pools (each with a
picker Service and its `<pool>-endpoints` Service), of the routes (route i of a namespace forwards to pool
i mod pools-per-namespace through the namespace's Gateway), of the pods (labelled for their pool) and a
ReferenceGrant; one poolgate GatewayClass and one of another controller.

It runs the hooks the way Metacontroller does: each customize hook's rules are evaluated against the cluster
(selectors as Metacontroller applies them with hook version v2), the sync request is built from what they select,
and the labels sync responses set are applied before the next measurement (so a route carries its pool labels, a
Gateway and a class their poolgate labels, as on a cluster where the hooks have run once)."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from hooks import gateway, gatewayclass, httproute, inferencepool
from hooks.settings import HookSettings
from tests.hooks import cases

KINDS = {
    "httproutes": "HTTPRoute",
    "gateways": "Gateway",
    "gatewayclasses": "GatewayClass",
    "namespaces": "Namespace",
    "referencegrants": "ReferenceGrant",
    "services": "Service",
    "inferencepools": "InferencePool",
    "pods": "Pod",
    "inferencemodelrewrites": "InferenceModelRewrite",
}


def build_cluster(namespaces: int, routes: int, pools: int, pods: int) -> list[dict]:
    """The objects of the cluster described in the module docstring."""
    objects: list[dict] = [cases.gateway_class(), cases.gateway_class("other", cases.OTHER)]
    for n in range(namespaces):
        ns = f"team-{n}"
        objects += [cases.namespace(ns), cases.grant(ns, f"team-{(n + 1) % namespaces}")]
        objects.append(cases.gateway("gw", [cases.listener("http", 80)], ns=ns))
        pool_names = [f"pool-{p}" for p in range(pools // namespaces)]
        for name in pool_names:
            objects += [
                cases.pool(name, [8000], f"{name}-picker", ns=ns),
                cases.service(f"{name}-picker", ns),
                cases.service(f"{name}-endpoints", ns),
            ]
        for r in range(routes // namespaces):
            rule = {"backendRefs": [cases.pool_ref(pool_names[r % len(pool_names)])]}
            objects.append(cases.route(f"route-{r}", [{"name": "gw"}], [rule], ns=ns))
        for i in range(pods // namespaces):
            objects.append(_pod(f"pod-{i}", ns, pool_names[i % len(pool_names)]))
    return objects


def _pod(name: str, ns: str, pool: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**cases.meta("Pod", name, ns, generation=0), "labels": {"app": pool}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }


def _labels_match(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def select(rule: dict, objects: list[dict], namespace_labels: dict[str, dict]) -> list[dict]:
    """The objects a related-resource rule selects (group and resource, namespace, names, label and namespace
    selectors)."""
    group = rule["apiVersion"].rpartition("/")[0]
    out = []
    for obj in objects:
        metadata = obj["metadata"]
        if obj["kind"] != KINDS[rule["resource"]] or obj["apiVersion"].rpartition("/")[0] != group:
            continue
        if "namespace" in rule and metadata.get("namespace") != rule["namespace"]:
            continue
        if rule.get("names") and metadata["name"] not in rule["names"]:
            continue
        if not _labels_match(rule.get("labelSelector") or {}, metadata.get("labels", {})):
            continue
        if "namespaceSelector" in rule and not _labels_match(
            rule["namespaceSelector"], namespace_labels.get(metadata.get("namespace", ""), {})
        ):
            continue
        out.append(obj)
    return out


def related(customize, parent: dict, objects: list[dict], settings: HookSettings) -> list[dict]:
    """What Metacontroller would send as `related` for this parent."""
    rules = customize({"controller": {}, "parent": parent}, settings)["relatedResources"]
    namespace_labels = {
        o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in objects if o["kind"] == "Namespace"
    }
    chosen = {id(o): o for rule in rules for o in select(rule, objects, namespace_labels)}
    return [o for o in chosen.values() if o is not parent]


def sync_request(controller: str, parent: dict, related_objects: list[dict]) -> dict:
    return cases.sync_request(controller, parent, related_objects)


def apply_labels(obj: dict, labels: dict) -> None:
    current = obj["metadata"].setdefault("labels", {})
    for key, value in labels.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value


HOOKS = {
    "GatewayClass": ("poolgate-gatewayclasses", None, gatewayclass.sync),
    "Gateway": ("poolgate-gateways", gateway.customize, gateway.sync),
    "HTTPRoute": ("poolgate-httproutes", httproute.customize, httproute.sync),
    "InferencePool": ("poolgate-inferencepools", inferencepool.customize, inferencepool.sync),
}


def converge(objects: list[dict], settings: HookSettings) -> None:
    """Run every sync hook once, in the order labels flow (classes, Gateways, routes), applying their labels."""
    for kind in ("GatewayClass", "Gateway", "HTTPRoute"):
        controller, customize, sync = HOOKS[kind]
        for obj in [o for o in objects if o["kind"] == kind]:
            found = related(customize, obj, objects, settings) if customize else []
            apply_labels(obj, sync(sync_request(controller, obj, found), settings).get("labels") or {})


def measure(objects: list[dict], settings: HookSettings) -> list[tuple[str, int, Counter, int, float]]:
    """(parent, related objects, related by kind, request bytes, sync time in ms) for one Gateway, one pool and one
    route."""
    rows = []
    for kind, name in (("Gateway", "gw"), ("InferencePool", "pool-0"), ("HTTPRoute", "route-0")):
        parent = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
        controller, customize, sync = HOOKS[kind]
        found = related(customize, parent, objects, settings)
        body = json.dumps(sync_request(controller, parent, found)).encode()
        started = time.perf_counter()
        sync(json.loads(body), settings)
        elapsed = (time.perf_counter() - started) * 1000
        rows.append(
            (
                f"{kind} {parent['metadata']['namespace']}/{name}",
                len(found),
                Counter(o["kind"] for o in found),
                len(body),
                elapsed,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--pods", type=int, default=10000)
    args = parser.parse_args(argv)
    settings = HookSettings()
    objects = build_cluster(args.namespaces, args.routes, args.pools, args.pods)
    converge(objects, settings)
    print(f"cluster: {Counter(o['kind'] for o in objects)}")
    print(f"{'parent':<32} {'related':>8} {'request bytes':>14} {'sync ms':>8}  related by kind")
    for parent, count, kinds, size, elapsed in measure(objects, settings):
        print(f"{parent:<32} {count:>8} {size:>14,} {elapsed:>8.1f}  {dict(sorted(kinds.items()))}")


if __name__ == "__main__":
    main()
