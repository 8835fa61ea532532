"""Picker replicas that share their load (`poolgate up --picker-replicas 2`: two real picker processes behind real
Envoy, each told the other's load exchange address): each replica learns of the requests the other sends, holds them
while they run and lets them go when they end; when a replica is killed, what it had announced is forgotten after
the load exchange's TTL, leaving no phantom load."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, pool_ref, route, service, sim_deployment
from poolgate.api.contract import LOAD_EXCHANGE_TTL_FLAG
from poolgate.up.processes import wait_until
from poolgate.up.stack import PICKER_METRICS_PORT

pytestmark = pytest.mark.xdist_group("e2e-picker-load-exchange")

TTL = 6.0  # seconds
STREAMS = 6
SLOW_SIM = ("--decode-ms", "20", "--prefill-overhead-ms", "2", "--prefill-ms-per-token", "0")
STREAM_TOKENS = 900  # 18 s at 20 ms per token: longer than the TTL


def objects() -> tuple[dict, ...]:
    return (
        gateway_class(),
        gateway(listeners=listener()),
        route(rules=[{"matches": [{"path": {"value": "/v1"}}], "backendRefs": [pool_ref("pool")]}]),
        pool("pool", failure_mode="FailOpen"),
        service("epp"),
        sim_deployment("pool", replicas=2, args=SLOW_SIM),
    )


def peer_requests(host: str) -> float:
    """The requests a replica holds for its peer (`poolgate_pool_endpoint_peer_requests`, summed over endpoints)."""
    text = httpx.get(f"http://{host}:{PICKER_METRICS_PORT}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "poolgate_pool_endpoint_peer_requests"
    )


def stream(url: str, tokens: int, done: list[int]) -> None:
    """One chat stream of `tokens` tokens, read to its end; appends the status to `done`."""
    try:
        with httpx.stream("POST", url, json=chat(max_tokens=tokens, stream=True), timeout=60) as response:
            for _ in response.iter_bytes():
                pass
            done.append(response.status_code)
    except httpx.HTTPError:
        done.append(0)


def start_streams(url: str, tokens: int) -> tuple[list[threading.Thread], list[int]]:
    done: list[int] = []
    threads = [threading.Thread(target=stream, args=(url, tokens, done), daemon=True) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    return threads, done


def test_replicas_hold_each_others_requests_until_they_end_or_the_ttl(start_stack):
    running = start_stack(*objects(), picker_replicas=2, picker_args=(LOAD_EXCHANGE_TTL_FLAG, f"{TTL:g}s"))
    plan = running.stack.status.plan
    hosts = {p.child: p.address.host for p in plan.pickers}
    assert sorted(hosts) == ["picker/default/epp", "picker/default/epp/1"]
    url = f"{running.url()}/v1/chat/completions"
    wait_until(lambda: httpx.post(url, json=chat()).status_code == 200, timeout=10, message="the pool answering")

    # every stream is held by the replica that did not pick it, until it ends
    threads, done = start_streams(url, tokens=250)  # 5 s each
    held: dict[str, float] = {}

    def all_held() -> bool:
        held.update({child: peer_requests(host) for child, host in hosts.items()})
        return sum(held.values()) == STREAMS

    wait_until(all_held, timeout=10, message=f"the replicas holding the {STREAMS} streams for each other")
    for thread in threads:
        thread.join(timeout=30)
    assert done == [200] * STREAMS
    wait_until(
        lambda: all(peer_requests(host) == 0 for host in hosts.values()),
        timeout=10,
        message="the ends released every held request",
    )
    print(f"held while running: {held}")

    # a killed replica's requests are forgotten after the TTL, though they still run
    threads, done = start_streams(url, tokens=STREAM_TOKENS)
    wait_until(all_held, timeout=10, message=f"the replicas holding the {STREAMS} streams for each other")
    survivor = max(held, key=lambda child: held[child])  # holds the most: the other replica picked those
    victim = next(child for child in hosts if child != survivor)
    assert held[survivor] > 0
    running.child(victim).kill()
    killed_at = time.monotonic()
    assert peer_requests(hosts[survivor]) == held[survivor]  # still running: held
    wait_until(lambda: peer_requests(hosts[survivor]) == 0, timeout=TTL + 4, message="the dead peer's load forgotten")
    forgotten_after = time.monotonic() - killed_at
    print(f"dead peer's {held[survivor]:g} requests forgotten {forgotten_after:.1f} s after the kill (TTL {TTL:g} s)")
    assert forgotten_after < TTL + 2.0
    assert any(thread.is_alive() for thread in threads)  # the streams outlived the TTL: only the TTL released them
