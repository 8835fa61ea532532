"""Fault scenarios on the real local stack (Envoy, pickers, simulated pods): the gateway under faults.

Each scenario runs a steady open-loop load (poolgate.load.generator) through Envoy, injects a fault, heals it and
reports one row `{scenario, requests, ok, failed, lost, p99_ms, recovered, ...}`. `failed` counts every request
that did not get a 2xx; `lost` counts the failures the gateway promises not to have (for a FailClose pool, a fast
5xx while its picker is down is the promise kept, not a loss). The e2e tests in e2e/reliability run the same
functions, shorter, and assert on their results.

- picker-killed-failopen: the pool's picker SIGKILLed, restarted later -> every request 2xx (Envoy balances).
- picker-killed-failclose: the same for a FailClose pool -> a 5xx within 1 s of the kill, none hangs, back by itself;
  a response on its way at the kill is cut (FailClose covers the response path too), counted as `cut_by_kill`.
- model-server-killed: one pod SIGKILLed mid-load, restarted later -> non-streaming requests retried on the picker's
  fallbacks (none lost), streams in flight end with an error (never hang), the dead pod leaves and returns.
- metrics-garbage / metrics-hang: one pod's /metrics answers garbage / never answers -> no request lost, one scrape
  in flight per endpoint, staleness in the picker's metrics and log.
- config-storm: 100 rapid edits of the objects -> no request lost, Envoy ends on the last edit.
- soak: a long steady load -> the picker's RSS and open file descriptors grow < 10%.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from poolgate.api.builders import (
    MODEL,
    chat,
    gateway,
    gateway_class,
    listener,
    pool,
    pool_ref,
    route,
    service,
    sim_deployment,
)
from poolgate.api.contract import CONFIG_GENERATION_HEADER, STEERING_HEADER

PICKER_ARGS = ("--enable-conformance-steering",)  # the scenarios' pickers: steering lets them aim at chosen pods
# picker-killed's pickers do not steer (nor report their picks in response headers), so the gateway observes the
# responses apart from the picks, as it does by default: a response that has started survives its picker
PICKER_KILLED_ARGS: tuple[str, ...] = ()
Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


# --- objects ------------------------------------------------------------------------------------------------------


def gateway_objects(rules: list[dict], port: int = 0) -> list[dict]:
    """A GatewayClass of poolgate, Gateway `gw` with one HTTP listener (port 0: a free one) and HTTPRoute `route`."""
    return [gateway_class(), gateway(listeners=listener(port)), route(rules=rules)]


def pool_objects(name: str = "pool", picker: str = "epp", failure_mode: str = "FailClose") -> list[dict]:
    """InferencePool `name` (pods labelled app=<name>, port 8000) and its picker Service."""
    return [pool(name, picker=picker, failure_mode=failure_mode), service(picker, ip=None)]


def picker_fault_objects() -> list[dict]:
    """Two pools behind one Gateway: /open/... -> FailOpen pool `open`, /v1/... -> FailClose pool `closed`."""
    rules = [
        {
            "matches": [{"path": {"value": "/open"}}],
            "backendRefs": [pool_ref("open")],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"}},
                }
            ],
        },
        {"matches": [{"path": {"value": "/v1"}}], "backendRefs": [pool_ref("closed")]},
    ]
    return [
        *gateway_objects(rules),
        *pool_objects("open", "epp-open", "FailOpen"),
        *pool_objects("closed", "epp-closed", "FailClose"),
        sim_deployment("open", 2),
        sim_deployment("closed", 2),
    ]


# Pods that take ~20 ms per 4-token answer, so requests are in flight when a pod dies.
TIMED_SIM = ("--decode-ms", "4", "--prefill-overhead-ms", "2", "--prefill-ms-per-token", "0")


def model_server_objects(replicas: int = 3) -> list[dict]:
    return [
        *gateway_objects([{"backendRefs": [pool_ref("pool")]}]),
        *pool_objects(),
        sim_deployment("pool", replicas, args=TIMED_SIM),
    ]


def metrics_fault_objects() -> list[dict]:
    """Pool `pool` of two healthy pods (`good-0`, `good-1`) and one (`flaky-0`) whose /metrics can be broken."""
    return [
        *gateway_objects([{"backendRefs": [pool_ref("pool")]}]),
        *pool_objects(),
        sim_deployment("pool", 2, name="good"),
        sim_deployment("pool", 1, args=("--no-latency", "--metrics-fault", "none"), name="flaky"),
    ]


def storm_objects(generation: int, port: int) -> list[dict]:
    """One pool whose route stamps every response with `x-config-generation: <generation>`."""
    rules = [
        {
            "backendRefs": [pool_ref("pool")],
            "filters": [
                {
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {"set": [{"name": CONFIG_GENERATION_HEADER, "value": str(generation)}]},
                }
            ],
        }
    ]
    return [*gateway_objects(rules, port), *pool_objects(), sim_deployment("pool", 2)]


def gateway_url(stack) -> str:
    return stack.gateway_urls()["default/gw"][0]


def endpoints(stack, pool: str) -> list[str]:
    """`ip:port` of every endpoint of a pool of a running stack."""
    target = stack.status.translation.graph.pools[("default", pool)]
    return [f"{pod.status.pod_ip}:{port}" for pod, port in target.endpoints]


def picker_address(stack, service: str) -> str:
    """The loopback address of the picker process serving a picker Service."""
    return next(p.address.host for p in stack.status.plan.pickers if p.service == service)


# --- results ------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """A scenario's row, every request's outcome and what else was measured (the tests assert on all three)."""

    row: dict
    outcomes: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)


def _row(scenario: str, outcomes: list, lost: int, recovered: bool | None, **extra) -> dict:
    from poolgate.load.generator import summarize

    summary = summarize(outcomes)
    row = {
        "scenario": scenario,
        "requests": summary["requests"],
        "ok": summary["ok"],
        "failed": summary["failed"],
        "lost": lost,
        "p99_ms": summary["p99_ms"],
        "recovered": recovered,
        **extra,
    }
    if lost:  # what the first failures looked like (when, answer, error), to tell a loss from an expected failure
        row["failures"] = [f"t={o.started:.2f}s status={o.status} {o.error}".strip() for o in outcomes if not o.ok][:5]
    return row


def _first(outcomes: list, after: float, predicate) -> float | None:
    """Seconds from `after` to the start of the first request started after it that satisfies `predicate`."""
    times = [o.started for o in outcomes if o.started >= after and predicate(o)]
    return round(min(times) - after, 3) if times else None


def _restart(stack, names: list[str]) -> None:
    restarted = stack.supervisor.restart_exited()
    if sorted(restarted) != sorted(names):
        raise RuntimeError(f"expected {names} to restart, restarted {restarted}")
    for name in names:
        stack.supervisor.wait_ready(name)


# --- scenarios ----------------------------------------------------------------------------------------------------


def picker_killed(stack, seconds: float = 30.0, rate: float = 40.0, progress: Progress = _quiet) -> list[Result]:
    """Both pickers of `picker_fault_objects` are SIGKILLed at 30% of the run and restarted at 60%, under load on
    both pools. Rows for the FailOpen and the FailClose pool."""
    from poolgate.load.generator import Load

    url = gateway_url(stack)
    kinds = {
        "failopen": ("open", f"{url}/open/chat/completions", "picker/default/epp-open"),
        "failclose": ("closed", f"{url}/v1/chat/completions", "picker/default/epp-closed"),
    }
    loads = {
        kind: Load(target, rate, lambda i: chat(content=f"request {i}"), timeout=5.0)
        for kind, (_, target, _) in kinds.items()
    }
    for load in loads.values():
        load.start()
    clock = next(iter(loads.values()))
    time.sleep(seconds * 0.3)
    progress("picker-killed: killing both pickers")
    kill_at = clock.now()
    for _, _, child in kinds.values():
        stack.supervisor.children[child].kill()
    time.sleep(seconds * 0.3)
    progress("picker-killed: restarting the pickers")
    _restart(stack, [child for _, _, child in kinds.values()])
    heal_at = clock.now()
    time.sleep(seconds * 0.4)
    results = []
    for kind, load in loads.items():
        outcomes = sorted(load.stop(), key=lambda o: o.started)
        offset = load.t0 - clock.t0  # both loads' outcomes on the first load's clock
        outcomes = [replace(o, started=o.started + offset) for o in outcomes]
        members = set(endpoints(stack, kinds[kind][0]))
        recovery = _first(outcomes, heal_at, lambda o, members=members: o.ok and o.picked in members)
        recovered_at = heal_at + recovery if recovery is not None else float("inf")
        tail = [o for o in outcomes if o.started >= recovered_at]
        recovered = recovery is not None and bool(tail) and all(o.ok and o.picked for o in tail)
        fallback = [o for o in outcomes if kill_at <= o.started < heal_at]
        if kind == "failopen":
            lost = sum(not o.ok for o in outcomes)
            facts: dict[str, float | None] = {
                "served_during_outage": sum(o.ok and o.served_by in members for o in fallback)
            }
        else:
            # the promise: a fast 5xx while the picker is away, never a hang; a response on its way when the
            # picker died finishes (its picking call ended with the pick; the call observing the response fails
            # open), so `cut_by_kill` counts broken promises
            def refused_fast(o, recovered_at=recovered_at) -> bool:
                return (
                    kill_at - 0.5 <= o.started < recovered_at
                    and 500 <= o.status < 600
                    and not o.error
                    and o.elapsed < 1.0
                )

            def cut_by_kill(o) -> bool:
                return (
                    200 <= o.status < 300
                    and o.error not in ("", "timeout")
                    and o.started < kill_at + 0.5
                    and kill_at <= o.ended < kill_at + 2.0
                )

            lost = sum(not (o.ok or refused_fast(o)) for o in outcomes)
            refused = [o for o in outcomes if o.status >= 500 and o.ended >= kill_at]
            facts = {
                "first_5xx_after_kill_s": round(min(o.ended for o in refused) - kill_at, 3) if refused else None,
                "slowest_5xx_ms": round(max(o.elapsed for o in refused) * 1000, 1) if refused else None,
                "cut_by_kill": sum(cut_by_kill(o) for o in outcomes),
            }
        results.append(
            Result(
                _row(
                    f"picker-killed-{kind}",
                    outcomes,
                    lost,
                    recovered,
                    recovery_s=recovery,
                    hung=sum(o.error == "timeout" for o in outcomes),
                    **facts,
                ),
                outcomes,
                {**facts, "kill_at": kill_at, "heal_at": heal_at, "recovery_s": recovery},
            )
        )
    return results


def model_server_killed(stack, seconds: float = 30.0, rate: float = 40.0, progress: Progress = _quiet) -> Result:
    """Pod `pool-0` of `model_server_objects` is SIGKILLed at 30% of the run and restarted at 60%. The load is
    non-streaming chat of ~70 ms; one long stream per pod, steered there, is in flight at the kill, and so are three
    non-streaming requests of ~1 s per pod (the picker spreads them), so that requests certainly are on the pod when
    it dies: the victim's stream must fail cleanly, its non-streaming requests be retried on a fallback."""
    from poolgate.load.generator import Load

    url = f"{gateway_url(stack)}/v1/chat/completions"
    members = endpoints(stack, "pool")
    victim, child = members[0], "pod/default/pool-0"
    load = Load(url, rate, lambda i: chat(max_tokens=16, content=f"request {i}"), timeout=10.0).start()
    time.sleep(seconds * 0.3 - 0.5)
    streams = Load(
        url,
        50,
        lambda i: chat(max_tokens=500, stream=True),
        headers=lambda i: {STEERING_HEADER: members[i]},
        timeout=20.0,
        limit=len(members),
    ).start()
    held = Load(url, 50, lambda i: chat(max_tokens=250, content=f"held {i}"), timeout=10.0, limit=3 * len(members))
    held.start()
    time.sleep(0.5)
    progress(f"model-server-killed: killing {victim}")
    kill_at = load.now()
    stack.supervisor.children[child].kill()
    time.sleep(seconds * 0.3)
    progress(f"model-server-killed: restarting {victim}")
    restart_at = load.now()  # the pod is dead until here; its new process may be picked before _restart returns
    _restart(stack, [child])
    heal_at = load.now()
    time.sleep(seconds * 0.4)
    outcomes = load.stop()
    stream_outcomes = streams.stop()
    answered = outcomes + held.stop()  # every non-streaming request, each of which must succeed
    stream_kill = kill_at - (streams.t0 - load.t0)
    picked_dead = [o.started for o in outcomes if o.picked == victim and kill_at <= o.started < restart_at]
    returned = _first(outcomes, heal_at, lambda o: o.ok and o.served_by == victim)
    tail_from = heal_at + (returned if returned is not None else 0)
    broken = [o for o in stream_outcomes if not o.ok]
    facts = {
        "victim": victim,
        "kill_at": kill_at,
        "heal_at": heal_at,
        "restart_s": round(heal_at - restart_at, 3),
        "picked_after_death_s": round(max(picked_dead) - kill_at, 3) if picked_dead else 0.0,
        "retried": sum(o.ok and o.picked == victim and o.served_by != victim for o in answered),
        "held_on_victim": sum(o.picked == victim for o in answered[len(outcomes) :]),
        "returned_after_s": returned,
        "streams": [(o.served_by, o.status, o.error, round(o.ended - stream_kill, 3)) for o in stream_outcomes],
    }
    # the victim's stream breaks off soon after the kill (an error, not a hang); the others complete
    streams_clean = (
        len(stream_outcomes) == len(members)
        and len(broken) == 1
        and broken[0].error != "timeout"
        and broken[0].ended - stream_kill < 3.0
    )
    # Envoy's count of retries refused by the cluster's circuit breaker (each one a request lost)
    overflow = stack.envoy_stats(r"^cluster\.poolgate/pool/.*\.upstream_rq_retry_overflow$")
    facts["retry_overflow"] = sum(overflow.values())
    lost = sum(not o.ok for o in answered)
    recovered = returned is not None and all(o.ok for o in outcomes if o.started >= tail_from)
    return Result(
        _row(
            "model-server-killed",
            outcomes,  # the figures of the steady load (the held requests would make its p99)
            lost,
            recovered,
            recovery_s=returned,
            retried=facts["retried"],
            retry_overflow=facts["retry_overflow"],
            dead_picked_for_s=facts["picked_after_death_s"],
            streams_failed_cleanly=streams_clean,
        ),
        answered,
        facts,
    )


def _fault(address: str, mode: str | None = None) -> dict:
    """Read (or switch) a simulated pod's /metrics fault."""
    import httpx

    from simulator.config import METRICS_FAULT_PATH

    url = f"http://{address}{METRICS_FAULT_PATH}"
    response = httpx.put(url, json={"mode": mode}) if mode else httpx.get(url)
    response.raise_for_status()
    return response.json()


def picker_metrics(host: str, port: int = 9090) -> str:
    """The Prometheus text of a picker's /metrics."""
    import httpx

    return httpx.get(f"http://{host}:{port}/metrics", timeout=5).text


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample of Prometheus text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def metrics_fault(
    stack, mode: str = "garbage", seconds: float = 30.0, rate: float = 40.0, progress: Progress = _quiet
) -> Result:
    """The flaky pod of `metrics_fault_objects` has its /metrics broken (`garbage` or `hang`) from 30% to 60% of
    the run."""
    from poolgate.load.generator import Load

    url = f"{gateway_url(stack)}/v1/chat/completions"
    flaky = next(e for e in endpoints(stack, "pool") if e.startswith(_pod_ip(stack, "flaky-0")))
    picker = picker_address(stack, "epp")
    reason = {"garbage": "invalid_metrics", "hang": "timeout"}[mode]
    errors_before = metric_value(
        picker_metrics(picker), "inference_extension_metrics_scrape_errors_total", reason=reason
    )
    load = Load(url, rate, lambda i: chat(content=f"request {i}"), timeout=10.0).start()
    time.sleep(seconds * 0.3)
    progress(f"metrics-{mode}: breaking /metrics of {flaky}")
    fault_at = load.now()
    _fault(flaky, mode)
    time.sleep(seconds * 0.3)
    during = picker_metrics(picker)
    state = _fault(flaky)
    progress(f"metrics-{mode}: healing {flaky}")
    _fault(flaky, "none")
    heal_at = load.now()
    time.sleep(seconds * 0.4)
    outcomes = load.stop()
    window = [o for o in outcomes if fault_at + 1.5 <= o.started < heal_at]
    returned = _first(outcomes, heal_at, lambda o: o.ok and o.served_by == flaky)
    log = stack.supervisor.children["picker/default/epp"].output()
    facts = {
        "flaky": flaky,
        "scrapes": state["scrapes"],
        "max_scrapes_in_flight": state["max_in_flight"],
        "scrape_errors": metric_value(during, "inference_extension_metrics_scrape_errors_total", reason=reason)
        - errors_before,
        "metrics_age_s": metric_value(during, "poolgate_pool_endpoint_metrics_age_seconds", endpoint=flaky),
        "logged": bool(re.search(rf'"metrics scrape failing[^\n]*"{re.escape(flaky)}"', log)),
        "flaky_share": round(sum(o.served_by == flaky for o in window) / len(window), 3) if window else None,
        "returned_after_s": returned,
    }
    lost = sum(not o.ok for o in outcomes)
    return Result(
        _row(
            f"metrics-{mode}",
            outcomes,
            lost,
            returned is not None,
            recovery_s=returned,
            max_scrapes_in_flight=state["max_in_flight"],
            flaky_share=facts["flaky_share"],
        ),
        outcomes,
        facts,
    )


def _pod_ip(stack, pod: str) -> str:
    return next(p.ip for p in stack.status.plan.sim_pods if p.name == pod)


def config_storm(
    url: str,
    apply_edit: Callable[[int], None],
    edits: int = 100,
    rate: float = 40.0,
    scenario: str = "config-storm",
    settle: float = 15.0,
    progress: Progress = _quiet,
) -> Result:
    """`apply_edit(n)` for n = 1..edits as fast as it returns, under load on `url`; then wait (at most `settle`
    seconds) until a request on a new connection carries `x-config-generation: <edits>` (Envoy's configuration is
    the last edit; `converged_after_s` is when that request was sent, so that its own latency on a busy machine is
    not counted as Envoy's). Requests on the load's kept-alive connections see the new routes once Envoy has drained the
    connections of the replaced listener (`keepalive_converged_s`)."""
    import httpx

    from poolgate.load.generator import Load

    target = f"{url}/v1/chat/completions"
    load = Load(
        target, rate, lambda i: chat(content=f"request {i}"), timeout=10.0, keep_headers=(CONFIG_GENERATION_HEADER,)
    )
    load.start()
    time.sleep(1.0)
    started = time.monotonic()
    for n in range(1, edits + 1):
        apply_edit(n)
        if n % 10 == 0:
            progress(f"{scenario}: {n}/{edits} edits")
    storm_s = time.monotonic() - started
    storm_end = load.now()
    deadline = time.monotonic() + settle
    converged = None
    while time.monotonic() < deadline:
        sent = load.now()  # Envoy was on the last edit by the time it routed a request sent now
        with httpx.Client(timeout=30) as fresh:  # a new connection: what Envoy serves now
            if fresh.post(target, json=chat()).headers.get(CONFIG_GENERATION_HEADER) == str(edits):
                converged = round(max(0.0, sent - storm_end), 3)
                break
        time.sleep(0.05)
    while time.monotonic() < deadline and not any(  # the kept-alive connections too, once drained
        o.started >= storm_end and o.headers.get(CONFIG_GENERATION_HEADER) == str(edits) for o in list(load.outcomes)
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    outcomes = load.stop()
    final = [
        o.started for o in outcomes if o.started >= storm_end and o.headers.get(CONFIG_GENERATION_HEADER) == str(edits)
    ]
    stale = [
        o.started
        for o in outcomes
        if o.started >= storm_end
        and o.headers.get(CONFIG_GENERATION_HEADER) != str(edits)
        and (not final or o.started < max(final))
    ]
    facts = {
        "storm_s": round(storm_s, 2),
        "edits_per_s": round(edits / storm_s, 1),
        "converged_after_s": converged,
        "keepalive_converged_s": (round(max(stale) - storm_end, 3) if stale else 0.0) if final else None,
        "generations_seen": len({o.headers.get(CONFIG_GENERATION_HEADER) for o in outcomes} - {None}),
    }
    lost = sum(not o.ok for o in outcomes)
    return Result(
        _row(
            scenario,
            outcomes,
            lost,
            converged is not None,
            recovery_s=converged,
            edits=edits,
            storm_s=facts["storm_s"],
            keepalive_converged_s=facts["keepalive_converged_s"],
        ),
        outcomes,
        facts,
    )


def reload_editor(stack) -> Callable[[int], None]:
    """Edits for `config_storm` through Stack.reload: rewrite the objects file with a new generation, reload."""
    import yaml

    path = stack.files[0]
    objects = list(yaml.safe_load_all(path.read_text()))
    listener_port = next(o for o in objects if o["kind"] == "Gateway")["spec"]["listeners"][0]["port"]

    def edit(n: int) -> None:
        path.write_text(yaml.safe_dump_all(storm_objects(n, listener_port), sort_keys=False))
        stack.reload()

    return edit


def process_sample(pid: int) -> tuple[int, int]:
    """(resident set size in bytes, open file descriptors) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status")
    rss_kb = int(found.group(1))
    return rss_kb * 1024, len(os.listdir(f"/proc/{pid}/fd"))


def soak(stack, seconds: float = 1800.0, rate: float = 40.0, progress: Progress = _quiet) -> Result:
    """A steady mixed load (chat, streamed chat with usage, completions) for `seconds`, sampling the picker's RSS
    and open file descriptors. Growth compares the last fifth of the run with the second fifth (after warm-up)."""
    from poolgate.load.generator import Load

    url = gateway_url(stack)
    paths = ("/v1/chat/completions", "/v1/chat/completions", "/v1/completions")

    def body(i: int) -> dict:
        if i % 3 == 2:
            return {"model": MODEL, "prompt": f"request {i} " * (1 + i % 50), "max_tokens": 4}
        return chat(stream=i % 3 == 1, content=f"conversation {i % 97} " * (1 + i % 20))

    pid = stack.supervisor.children["picker/default/epp"].popen.pid
    samples: list[tuple[float, int, int]] = []
    load = Load(lambda i: url + paths[i % 3], rate, body, timeout=10.0).start()
    interval = max(0.5, seconds / 120)
    while load.now() < seconds:
        samples.append((load.now(), *process_sample(pid)))
        if len(samples) % 20 == 0:
            progress(
                f"soak: {load.now():.0f}/{seconds:.0f} s, picker RSS {samples[-1][1] / 2**20:.1f} MiB, "
                f"{samples[-1][2]} fds"
            )
        time.sleep(interval)
    outcomes = load.stop()

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    early = [s for s in samples if seconds * 0.2 <= s[0] < seconds * 0.4]
    late = [s for s in samples if s[0] >= seconds * 0.8]
    rss_growth = mean([s[1] for s in late]) / mean([s[1] for s in early]) - 1
    fd_growth = mean([s[2] for s in late]) / mean([s[2] for s in early]) - 1
    facts = {
        "samples": samples,
        "rss_growth": rss_growth,
        "fd_growth": fd_growth,
        "rss_mib": round(samples[-1][1] / 2**20, 1),
        "fds": samples[-1][2],
    }
    return Result(
        _row(
            "soak",
            outcomes,
            sum(not o.ok for o in outcomes),
            None,
            seconds=seconds,
            rss_growth_pct=round(rss_growth * 100, 2),
            fd_growth_pct=round(fd_growth * 100, 2),
            rss_mib=facts["rss_mib"],
            fds=facts["fds"],
        ),
        outcomes,
        facts,
    )
