"""Several picker replicas for one pool (`poolgate up --picker-replicas`): Envoy spreads its picker calls over them,
a killed replica costs a FailOpen pool nothing and a FailClose pool only the requests it held, and replicas that all
consume the engines' KV events route for prefix-cache hits as well as one picker does.

The simulated pods publish vLLM's KV events (`--kv-events-endpoint tcp://*:5557`, each pod on its own address) in a
real tokenizer's token ids; the pickers run `poolgate-default`, which reads the events of every endpoint, given the
same tokenizer and the pods' chat template (`tokenizer.path`)."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from picker.scheduling.config import BUILTIN_CONFIGS
from poolgate.api.builders import chat, gateway, gateway_class, listener, pool, pool_ref, route, service, sim_deployment
from poolgate.translate.xds import PICKER_EJECTION_FAILURES
from poolgate.up.processes import wait_until

pytestmark = pytest.mark.xdist_group("e2e-picker-replicas")

CLIENTS_PER_POOL = 4
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "pack",
    "my",
    "box",
    "with",
    "five",
    "dozen",
    "liquor",
    "jugs",
]


# the simulator's chat rendering (simulator.tokens.render_chat) as a chat template
SIM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer trained offline, with the simulator's chat template."""
    root = tmp_path_factory.mktemp("tokenizer")
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    model.train_from_iterator([" ".join(WORDS) * 20], trainer)
    model.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"chat_template": SIM_CHAT_TEMPLATE}))
    return root


def picker_args(tokenizer: Path) -> tuple[str, ...]:
    """`poolgate-default`, its precise producer tokenizing with `tokenizer`."""
    config = yaml.safe_load(BUILTIN_CONFIGS["poolgate-default"])
    producer = next(p for p in config["plugins"] if p["type"] == "precise-prefix-cache-producer")
    producer["parameters"]["tokenizer"] = {"path": str(tokenizer)}
    return ("--config-text", yaml.safe_dump(config))


def sim_args(tokenizer: Path, latency: bool = False) -> tuple[str, ...]:
    """Pods that publish their KV events in the tokenizer's ids, and answer at once (or with the simulator's
    default latency, under which a cache miss costs prefill time)."""
    return (
        *(() if latency else ("--no-latency",)),
        "--tokenizer",
        str(tokenizer),
        "--kv-events-endpoint",
        "tcp://*:5557",
    )


def two_pools(tokenizer: Path) -> tuple[dict, ...]:
    """A FailOpen pool at /open and a FailClose pool at /v1, two pods each, each pool with its own picker Service."""
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"}},
    }
    return (
        gateway_class(),
        gateway(listeners=listener()),
        route(
            rules=[
                {"matches": [{"path": {"value": "/open"}}], "backendRefs": [pool_ref("open")], "filters": [rewrite]},
                {"matches": [{"path": {"value": "/v1"}}], "backendRefs": [pool_ref("closed")]},
            ]
        ),
        pool("open", picker="epp-open", failure_mode="FailOpen"),
        pool("closed", picker="epp-closed"),
        service("epp-open"),
        service("epp-closed"),
        sim_deployment("open", replicas=2, args=sim_args(tokenizer)),
        sim_deployment("closed", replicas=2, args=sim_args(tokenizer)),
    )


def hammer(url: str, stop: threading.Event, outcomes: list[tuple[float, float, int]]) -> None:
    """Send chat requests one after the other until `stop`, recording (time sent, time answered, status; 0 = no
    response)."""
    with httpx.Client(timeout=10.0) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = client.post(url, json=chat(max_tokens=2)).status_code
            except httpx.HTTPError:
                status = 0
            outcomes.append((sent, time.monotonic(), status))


def test_a_killed_replica_costs_fail_open_nothing_and_fail_close_only_what_it_held(start_stack, tokenizer):
    stack = start_stack(*two_pools(tokenizer), picker_replicas=2, picker_args=picker_args(tokenizer))
    url = stack.url()
    plan = stack.stack.status.plan
    assert sorted(p.child for p in plan.pickers) == [
        "picker/default/epp-closed",
        "picker/default/epp-closed/1",
        "picker/default/epp-open",
        "picker/default/epp-open/1",
    ]
    picker_cluster = stack.stack.status.translation.ir.clusters["poolgate/picker/default/epp-closed/9002"]
    assert sorted(a.host for a in picker_cluster.addresses) == sorted(
        p.address.host for p in plan.pickers if p.service == "epp-closed"
    )
    outcomes: dict[str, list[tuple[float, float, int]]] = {"open": [], "closed": []}
    stop = threading.Event()
    paths = {"open": f"{url}/open/chat/completions", "closed": f"{url}/v1/chat/completions"}
    with ThreadPoolExecutor(2 * CLIENTS_PER_POOL) as clients:
        for name, path in paths.items():
            for _ in range(CLIENTS_PER_POOL):
                clients.submit(hammer, path, stop, outcomes[name])
        time.sleep(2.0)
        killed_at = time.monotonic()
        stack.child("picker/default/epp-open/1").kill()
        stack.child("picker/default/epp-closed/1").kill()
        time.sleep(4.0)
        stop.set()
    # requests answered before the kill, and those in flight at it or sent after it
    before = {name: [status for _, done, status in rows if done < killed_at] for name, rows in outcomes.items()}
    after = {name: [status for _, done, status in rows if done >= killed_at] for name, rows in outcomes.items()}
    assert all(status == 200 for rows in before.values() for status in rows), before
    assert len(after["open"]) > 20 and len(after["closed"]) > 20, {k: len(v) for k, v in after.items()}
    assert all(status == 200 for status in after["open"]), [s for s in after["open"] if s != 200]
    # FailClose: at most the requests the killed replica held (one per client), the calls that eject it and one more
    # per client racing the ejection (Envoy applies it on its main thread); then the replica left picks every request.
    # Each fails fast: a 5xx, or (0) a response cut when the replica died while its inline response path held it
    failed = [(done - sent, status) for sent, done, status in outcomes["closed"] if done >= killed_at and status != 200]
    bound = 2 * CLIENTS_PER_POOL + PICKER_EJECTION_FAILURES
    assert len(failed) <= bound, (len(failed), bound)
    assert all((status == 0 or 500 <= status < 600) and seconds < 3.0 for seconds, status in failed), failed
    last_second = [status for sent, _, status in outcomes["closed"] if sent >= killed_at + 3.0]
    assert last_second and all(status == 200 for status in last_second)
    print(
        f"after the kill: FailOpen {len(after['open'])} requests, 0 errors; FailClose {len(after['closed'])} "
        f"requests, {len(failed)} errors (bound {bound})"
    )


def shared_prefix_hit_rate(url: str, seed: int = 7) -> float:
    """Send a shared-prefix workload (6 system prompts of 600 words, each sent once to warm up, then 120 requests
    one after the other, so that what a replica knows of the others' picks comes from the engines' events alone)
    and return the prompt tokens the pods found cached / all prompt tokens of those 120, from the responses'
    usage."""
    rng = random.Random(seed)
    systems = [" ".join(rng.choice(WORDS) for _ in range(600)) for _ in range(6)]

    def body(system: str) -> dict:
        question = " ".join(rng.choice(WORDS) for _ in range(20))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        return {**chat(max_tokens=2), "messages": messages}

    def send(body: dict) -> tuple[int, int]:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30.0)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        return usage["prompt_tokens_details"]["cached_tokens"], usage["prompt_tokens"]

    for system in systems:
        send(body(system))
    results = [send(body(rng.choice(systems))) for _ in range(120)]
    return sum(cached for cached, _ in results) / sum(prompt for _, prompt in results)


def one_pool(tokenizer: Path) -> tuple[dict, ...]:
    return (
        gateway_class(),
        gateway(listeners=listener()),
        route(rules=[{"matches": [{"path": {"value": "/v1"}}], "backendRefs": [pool_ref("pool")]}]),
        pool("pool"),
        service("epp"),
        sim_deployment("pool", replicas=3, args=sim_args(tokenizer, latency=True)),
    )


def test_two_replicas_fed_by_the_engines_events_hit_the_prefix_cache_as_often_as_one(start_stack, tokenizer):
    rates = {}
    for replicas in (1, 2):
        stack = start_stack(*one_pool(tokenizer), picker_replicas=replicas, picker_args=picker_args(tokenizer))
        wait_until(
            lambda s=stack: httpx.post(f"{s.url()}/v1/chat/completions", json=chat()).status_code == 200,
            timeout=10,
            message="the pool answering",
        )
        rates[replicas] = shared_prefix_hit_rate(stack.url())
    print(f"prefix hit rate: 1 replica {rates[1]:.3f}, 2 replicas {rates[2]:.3f}")
    # 6 groups over 3 pods: a router blind to the cache reuses about a third of what a cache-aware one does
    assert rates[1] > 0.6, rates
    assert abs(rates[2] - rates[1]) <= 0.02, rates
