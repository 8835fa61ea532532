"""The live summary `poolgate up` shows: where to send requests, the pools and their pickers, recent events."""

from __future__ import annotations

import time
import urllib.request
from collections import deque

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from poolgate.translate.conditions import ABNORMAL_WHEN_TRUE
from poolgate.up.stack import PICKER_METRICS_PORT, Stack, Status

POOL_GAUGES = (
    "inference_pool_ready_pods",
    "inference_pool_average_queue_size",
    "inference_pool_average_kv_cache_utilization",
)


class Summary:
    """Renders the state of a Stack to the terminal (a live table on a terminal, plain lines otherwise)."""

    def __init__(self, stack: Stack, console: Console):
        self.stack = stack
        self.console = console
        self.events: deque[str] = deque(maxlen=6)
        self._live: Live | _NoLive | None = None

    def print_started(self, status: Status) -> None:
        plan = status.plan
        self._event(f"started {len(plan.sim_pods)} simulated pods, {len(plan.pickers)} pickers and Envoy")
        for warning in plan.warnings + status_problems(status.translation.status()):
            self._event(f"warning: {warning}")
        model = next(
            (pod.args[pod.args.index("--model") + 1] for pod in plan.sim_pods if "--model" in pod.args[:-1]), "MODEL"
        )
        for _gateway, urls in self.stack.gateway_urls().items():
            self.console.print(
                f"try: curl {urls[0]}/v1/chat/completions -H 'content-type: application/json' "
                f'-d \'{{"model": "{model}", "messages": [{{"role": "user", '
                f'"content": "Hello"}}]}}\'',
                highlight=False,
                soft_wrap=True,
            )

    def live(self) -> Live | _NoLive:
        self._live = (
            Live(self._render(), console=self.console, refresh_per_second=2, transient=False, auto_refresh=False)
            if self.console.is_terminal
            else _NoLive()
        )
        return self._live

    def refresh(self) -> None:
        if isinstance(self._live, Live):
            self._live.update(self._render(), refresh=True)

    def reloaded(self, error: str | None) -> None:
        self._event(
            f"reload failed, still serving the last good configuration: {error}"
            if error
            else "files changed: configuration reloaded"
        )

    def restarted(self, names: list[str]) -> None:
        for name in names:
            self._event(f"{name} had exited: restarted")

    def _event(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.events.append(line)
        if not self.console.is_terminal:
            self.console.print(line, highlight=False)

    def _render(self) -> Group:
        status = self.stack.status
        gateways = Table(title="Gateways", title_justify="left")
        gateways.add_column("gateway")
        gateways.add_column("send requests to")
        for gateway, urls in self.stack.gateway_urls().items():
            gateways.add_row(gateway, ", ".join(urls))
        pools = Table(title="InferencePools", title_justify="left")
        for column in ("pool", "picker", "ready pods", "avg queue", "avg KV use"):
            pools.add_column(column)
        children = self.stack.supervisor.children
        for picker in status.plan.pickers if status else []:
            child = children.get(picker.child)
            state = "running" if child and child.running else "down"
            gauges = _picker_gauges(picker.address.host)
            for pool in picker.pools:
                values = gauges.get(pool.split("/", 1)[1], {})
                pools.add_row(
                    pool,
                    f"{picker.address.host}:{picker.address.port} ({state})",
                    _fmt(values.get(POOL_GAUGES[0]), "{:.0f}"),
                    _fmt(values.get(POOL_GAUGES[1]), "{:.1f}"),
                    _fmt(values.get(POOL_GAUGES[2]), "{:.0%}"),
                )
        running = sum(1 for c in children.values() if c.running)
        processes = f"processes: {running}/{len(children)} running; logs in {self.stack.supervisor.log_dir}"
        return Group(gateways, pools, processes, *self.events)


def status_problems(statuses: list[dict]) -> list[str]:
    """Every condition in the computed status that reports a problem (False, or True for a negative-polarity type
    such as Conflicted), naming the object whose status says so."""
    out = []

    def walk(node: object, ref: str) -> None:
        if isinstance(node, dict):
            for condition in node.get("conditions", []) if isinstance(node.get("conditions"), list) else []:
                kind, status = condition.get("type"), condition.get("status")
                if status == ("True" if kind in ABNORMAL_WHEN_TRUE else "False"):
                    line = f"{ref}: {kind} {status} ({condition.get('reason')}): {condition.get('message', '')}"
                    if line not in out:
                        out.append(line)
            for key, value in node.items():
                if key != "conditions":
                    walk(value, ref)
        elif isinstance(node, list):
            for item in node:
                walk(item, ref)

    for entry in statuses:
        meta = entry["metadata"]
        walk(entry.get("status"), f"{entry['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " "))
    return out


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _picker_gauges(host: str) -> dict[str, dict[str, float]]:
    """Pool gauges from a picker's /metrics: pool name -> gauge -> value (empty when unreachable)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{PICKER_METRICS_PORT}/metrics", timeout=0.3) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name in POOL_GAUGES:
            for sample in family.samples:
                out.setdefault(sample.labels.get("name", ""), {})[family.name] = sample.value
    return out


class _NoLive:
    """Stands in for rich's Live when the output is not a terminal (events are printed as lines instead)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
