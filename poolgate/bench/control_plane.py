"""`poolgate bench control-plane`: time and memory of translation (objects -> Envoy configuration and status) and of
the Gateway's Metacontroller sync hook (the heaviest hook: the Envoy ConfigMap of every route) for growing inputs,
from 10 routes / 1 pool / 10 pods to 1,000 routes / 100 pools / 10,000 pods."""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from poolgate.api.contract import CONTROLLER_NAME
from poolgate.bench.cli import add_plot_arguments

# (routes, pools, pods) per case: the three grow together, the largest is the target case (< 1 s)
CASES = ((10, 1, 10), (50, 5, 100), (100, 10, 1_000), (250, 25, 2_500), (500, 50, 5_000), (1_000, 100, 10_000))


@dataclass(frozen=True)
class Case:
    routes: int
    pools: int
    pods: int


def synthetic_objects(case: Case) -> list[dict]:
    """A Gateway with `routes` HTTPRoutes spread over `pools` InferencePools (each with a picker Service) whose
    `pods` ready pods are spread evenly, as raw Kubernetes objects."""
    gw = "gateway.networking.k8s.io/v1"
    out: list[dict] = [
        {
            "apiVersion": gw,
            "kind": "GatewayClass",
            "metadata": {"name": "poolgate"},
            "spec": {"controllerName": CONTROLLER_NAME},
        },
        {
            "apiVersion": gw,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {"gatewayClassName": "poolgate", "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]},
        },
    ]
    for p in range(case.pools):
        out.append(
            {
                "apiVersion": "inference.networking.k8s.io/v1",
                "kind": "InferencePool",
                "metadata": {"name": f"pool-{p}", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": f"pool-{p}"}},
                    "targetPorts": [{"number": 8000}],
                    "endpointPickerRef": {"name": f"epp-{p}", "port": {"number": 9002}},
                },
            }
        )
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"epp-{p}", "namespace": "default"},
                "spec": {"clusterIP": f"10.96.{p // 250}.{p % 250 + 1}", "ports": [{"port": 9002}]},
            }
        )
    for i in range(case.pods):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"pod-{i}", "namespace": "default", "labels": {"app": f"pool-{i % case.pools}"}},
                "status": {
                    "phase": "Running",
                    "podIP": f"10.{1 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    for r in range(case.routes):
        out.append(
            {
                "apiVersion": gw,
                "kind": "HTTPRoute",
                "metadata": {"name": f"route-{r}", "namespace": "default"},
                "spec": {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": [f"team-{r}.example.com"],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                            "backendRefs": [
                                {
                                    "group": "inference.networking.k8s.io",
                                    "kind": "InferencePool",
                                    "name": f"pool-{r % case.pools}",
                                }
                            ],
                        }
                    ],
                },
            }
        )
    return out


def _stages(raws: list[dict]) -> tuple[float, float, float]:
    from poolgate.api import parse_objects
    from poolgate.translate import translate

    t0 = time.perf_counter()
    objects, problems = parse_objects(("bench", raw) for raw in raws)
    t1 = time.perf_counter()
    translation = translate(objects)
    bootstrap = translation.bootstrap()
    t2 = time.perf_counter()
    status = translation.status()
    t3 = time.perf_counter()
    assert not problems and bootstrap["static_resources"]["listeners"] and status
    return t1 - t0, t2 - t1, t3 - t2


def gateway_sync_request(raws: list[dict]) -> dict:
    """The request Metacontroller sends the Gateway sync hook (hook version v2) for these objects: the Gateway as
    parent, the rest as related objects (Pods are never related: Envoy resolves pools by DNS)."""
    related: dict[str, dict] = {}
    gateway = next(raw for raw in raws if raw["kind"] == "Gateway")
    for raw in raws:
        if raw is gateway or raw["kind"] == "Pod":
            continue
        meta = raw["metadata"]
        key = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
        related.setdefault(f"{raw['kind']}.{raw['apiVersion']}", {})[key] = raw
    return {
        "controller": {"metadata": {"name": "poolgate-gateways"}},
        "object": gateway,
        "attachments": {},
        "related": related,
        "finalizing": False,
    }


def _hook_seconds(raws: list[dict]) -> float:
    from hooks.gateway import sync
    from hooks.settings import HookSettings

    request = gateway_sync_request(raws)
    t0 = time.perf_counter()
    response = sync(request, HookSettings())
    elapsed = time.perf_counter() - t0
    assert response["attachments"] and response["status"]
    return elapsed


def measure(case: Case, repeats: int = 3) -> dict:
    """Best-of-`repeats` seconds of each stage (parse, translate to an Envoy bootstrap, status) for one case, and
    the peak Python memory of one more run under tracemalloc (which slows it, so it is not timed)."""
    raws = synthetic_objects(case)
    gc.collect()
    runs = [_stages(raws) for _ in range(repeats)]
    parse_s, translate_s, status_s = (min(r[i] for r in runs) for i in range(3))
    hook_s = min(_hook_seconds(raws) for _ in range(repeats))
    tracemalloc.start()
    _stages(raws)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "routes": case.routes,
        "pools": case.pools,
        "pods": case.pods,
        "objects": len(raws),
        "parse_s": round(parse_s, 4),
        "translate_s": round(translate_s, 4),
        "status_s": round(status_s, 4),
        "total_s": round(parse_s + translate_s + status_s, 4),
        "gateway_hook_s": round(hook_s, 4),
        "peak_mb": round(peak / 2**20, 1),
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    add_plot_arguments(parser, "control-plane.png (the growth curve of the stage times)")
    parser.add_argument("--quick", action="store_true", help="only the three smallest cases")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from poolgate.bench.report import print_table, write_json

    cases = [Case(*c) for c in (CASES[:3] if args.quick else CASES)]
    rows = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("translating", total=len(cases))
        for case in cases:
            rows.append(measure(case))
            progress.advance(task)
    print_table(
        "control plane: objects -> Envoy configuration + status",
        rows,
        [
            "routes",
            "pools",
            "pods",
            "objects",
            "parse_s",
            "translate_s",
            "status_s",
            "total_s",
            "gateway_hook_s",
            "peak_mb",
        ],
    )
    if not args.no_plots:
        print(f"plot: {plot(rows, Path(args.plots) / 'control-plane.png')}")
    if args.json:
        write_json(args.json, rows)
    return 0


def plot(rows: list[dict], path: Path) -> Path:
    """Stage times against the number of objects, log-log (a straight line of slope 1 = linear growth)."""
    from poolgate.bench.report import new_figure, save_figure

    fig, ax = new_figure(figsize=(6, 4))
    x = [r["objects"] for r in rows]
    for key in ("parse_s", "translate_s", "status_s", "total_s", "gateway_hook_s"):
        ax.plot(x, [r[key] for r in rows], marker="o", label=key.removesuffix("_s"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input objects (routes + pools + pods + services)")
    ax.set_ylabel("seconds")
    ax.set_title("poolgate control plane: translation and hook time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
