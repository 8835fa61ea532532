"""One routing run: a fleet of simulated vLLM servers on a virtual clock, routed by the picker's own scheduler.

What runs is what runs live, minus the network:
- every server is a `simulator.ServerModel` (the engine behind `poolgate sim`) with the default 8B-on-H100
  parameters;
- the picker is a `picker.scheduling.Scheduler` with a profile built from an EndpointPickerConfig, over a
  `picker.pool.PoolState` whose endpoints are the servers;
- metrics reach the pool as they do from the live scraper: every 50 ms per server (staggered over the interval),
  `pool.apply_samples(key, server.gauge_samples(), now, mark)` with the dispatch mark of the scrape; with
  `scrape_interval=0` every server is scraped right before each pick instead (perfect state: no scrape lag);
- `replicas`: more picker replicas of the same profile share the traffic, as several picker processes behind
  Envoy's ext_proc cluster do: requests go to them in turn, each replica has its own pool view (its own scrapes),
  prefix index and learned state, and every replica's precise prefix index is fed every server's KV events;
  the replicas exchange their load as live ones do (`picker.scheduling.loadbook`): each announcement reaches the
  other replicas' load books `peer_delay` seconds later (None: they share nothing);
- each request is the OpenAI chat body a client sends: the picker reads it with `PromptInput.from_body`, the
  server with the simulator's own request parser (`simulator.protocol.parse_generation`), so prefix reuse on the
  server and in the picker's index come from the same bytes;
- the lifecycle follows the live server: `schedule` at arrival, `on_served` with the primary, `on_first_token` at
  the first token, `on_complete` when the response ends.

Nothing measures wall time: a run is deterministic for a given workload and picker seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from picker.kvcache.events import EventBatch, decode_event
from picker.kvcache.index import BlockIndex
from picker.kvcache.tokenizer import OFF_LOOP_MIN_BYTES
from picker.pool import EndpointSpec, PoolState
from picker.scheduling import Outcome, PickerConfig, PromptInput, Scheduler, SchedulingRequest
from picker.scheduling.loadbook import LoadBook, LoadEvent
from picker.scheduling.precise_prefix import PrecisePrefixCacheProducer
from poolgate.bench.routing import PEER_DELAY, SCRAPE_INTERVAL
from poolgate.bench.routing.workloads import CHAT_PATH, Session, Workload
from simulator import Prompt, ServerConfig, ServerModel, VirtualClock
from simulator.model import InvalidRequestError, UnknownModelError
from simulator.protocol import parse_generation
from simulator.tokens import byte_token_ids, render_chat

ENGINE_LABELS = {"llm-d.ai/engine-type": "vllm"}
PEER_TTL = 3600.0  # seconds: nothing is lost on the virtual clock, so nothing needs forgetting


def endpoint_specs(pods: int) -> list[EndpointSpec]:
    """One endpoint per simulated pod, each on its own address."""
    return [EndpointSpec(f"10.0.{i // 200}.{10 + i % 200}", 8000, f"vllm-{i}", ENGINE_LABELS) for i in range(pods)]


class ServerPrompts:
    """The simulator's view of request bodies (its `Prompt`, in stand-in token ids: `byte_token_ids`), parsed once
    per distinct body object."""

    def __init__(self) -> None:
        self._prompts: dict[int, tuple[dict, Prompt]] = {}

    def __call__(self, body: dict) -> Prompt:
        """The prompt a simulated server builds from this body."""
        cached = self._prompts.get(id(body))
        if cached is None or cached[0] is not body:
            text = parse_generation(orjson.dumps(body), chat=True).prompt.text
            assert text is not None  # a chat prompt is rendered text
            cached = self._prompts[id(body)] = (body, Prompt.from_token_ids(byte_token_ids(text)))
        return cached[1]


class ServerTokenizer:
    """Tokenizes a chat body as the simulated servers do (their chat rendering, `byte_token_ids`): what a precise
    prefix producer is given here in place of the engines' tokenizer."""

    off_loop_min_bytes = OFF_LOOP_MIN_BYTES

    def tokenize(self, body: Mapping[str, Any]) -> Sequence[int] | None:
        """The servers' token ids for the body's messages."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        return byte_token_ids(render_chat((m["role"], m["content"]) for m in messages))


class IndexFeed:
    """Delivers one server's KV-event batches straight into precise prefix indexes (one per picker replica), in
    order, as each replica's subscriber would from the server's ZMQ stream (sequence numbers from 0)."""

    def __init__(self, indexes: Sequence[BlockIndex], endpoint: str, clock: VirtualClock) -> None:
        self.indexes = indexes
        self.endpoint = endpoint
        self.clock = clock
        self.sequence = 0

    def publish(self, events: Sequence[dict[str, Any]], timestamp: float | None = None) -> None:
        """Apply one batch to every index."""
        if not events:
            return
        decoded = [decode_event(event) for event in events]
        batch = EventBatch(f"kv@{self.endpoint}", self.sequence, self.clock.now(), decoded)
        for index in self.indexes:
            index.ingest(self.endpoint, batch)
        self.sequence += 1

    def close(self) -> None:
        """Nothing to release."""


class SoonestFirstToken:
    """The `soonest` reference: not a picker profile but a router that reads every simulated server's exact state
    (its batch, queue, prefix cache and the step under way) and sends each request, when it arrives and once, to
    the server whose engine would give it its first token soonest if nothing else arrived
    (`ServerModel.first_token_forecast`); ties go to the first server. It is greedy: it does not weigh what the
    choice costs the requests after it."""

    def pick(self, servers: Mapping[str, ServerModel], prompt: Prompt, output_tokens: int, model: str) -> str:
        """The key of the server with the earliest forecast first token for this request."""
        return min(servers, key=lambda key: servers[key].first_token_forecast(prompt, output_tokens, model))


def _precise_producer(config: PickerConfig) -> PrecisePrefixCacheProducer | None:
    return next((p for p in config.profile().plugins() if isinstance(p, PrecisePrefixCacheProducer)), None)


@dataclass(slots=True)
class RequestRecord:
    """What the client saw of one request."""

    session: int
    turn: int
    arrival: float
    outcome: str = "ok"  # "ok", "shed" (429) or "error" (no endpoint, refused by the server)
    endpoint: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    itl_runs: list[list] = field(default_factory=list)
    group: int | None = None  # the shared system prompt the request starts with, numbered in order of appearance

    @property
    def ttft(self) -> float | None:
        """Time to first token, from the request's arrival at the gateway."""
        return None if self.first_token_at is None else self.first_token_at - self.arrival


@dataclass(slots=True)
class RunResult:
    """The records of every request of a run, and what the scrape loop did."""

    records: list[RequestRecord]
    scrapes: dict[str, list[float]]  # endpoint key -> virtual times of its scrapes (when kept)
    end: float  # virtual time when the last response ended


@dataclass(slots=True)
class _Replica:
    """One picker replica: its own pool view (scraped on its own) and scheduler."""

    pool: PoolState
    scheduler: Scheduler
    book: LoadBook  # what the other replicas announced


def simulate(
    workload: Workload,
    config: PickerConfig | SoonestFirstToken,
    pods: int,
    server_config: ServerConfig | None = None,
    keep_scrape_times: bool = False,
    prompts: ServerPrompts | None = None,
    replicas: Sequence[PickerConfig] = (),
    scrape_interval: float = SCRAPE_INTERVAL,
    peer_delay: float | None = PEER_DELAY,
) -> RunResult:
    """Run a workload through a fleet of `pods` simulated servers routed by `config`'s first profile (and by the
    `replicas`, more instances of it, in turn, exchanging their load with a `peer_delay`), or by the
    `SoonestFirstToken` reference; `scrape_interval` 0 scrapes every server before each pick."""
    if scrape_interval < 0:
        raise ValueError("the scrape interval must be >= 0 (0: before every pick)")
    if peer_delay is not None and peer_delay < 0:
        raise ValueError("the peer delay must be >= 0")
    server_config = server_config or ServerConfig()
    prompts = prompts or ServerPrompts()
    lead = scrape_interval or SCRAPE_INTERVAL
    clock = VirtualClock(start=-lead)  # every endpoint is scraped once before time 0
    specs = endpoint_specs(pods)
    adapters = {name: f"/adapters/{name}" for name in workload.adapters}
    reference = config if isinstance(config, SoonestFirstToken) else None
    pickers: list[_Replica] = []
    indexes: list[BlockIndex] = []
    for replica_config in [] if isinstance(config, SoonestFirstToken) else [config, *replicas]:
        pool = PoolState(clock=clock.now)
        pool.set_endpoints(specs)
        producer = _precise_producer(replica_config)  # fed the servers' KV events directly, in order
        if producer is not None:
            producer.attach_fed(pool, ServerTokenizer())
            indexes.append(producer.index)
        scheduler = Scheduler(pool, replica_config.profile(), saturation=replica_config.saturation, fallbacks=2)
        pickers.append(_Replica(pool, scheduler, LoadBook(scheduler, ttl=PEER_TTL)))

    def deliver(sender: int, events: list[LoadEvent]) -> None:
        for receiver, replica in enumerate(pickers):
            if receiver != sender:
                replica.book.apply(str(sender), events, clock.now())

    if replicas and peer_delay is not None:
        delay = peer_delay
        for number, replica in enumerate(pickers):
            replica.scheduler.outbox = lambda event, n=number: clock.call_at(clock.now() + delay, deliver, n, [event])

    def server(key: str) -> ServerModel:
        feed = IndexFeed(indexes, key, clock) if indexes else None
        return ServerModel(clock, server_config, adapters, name=key, kv_events=feed)

    servers = {spec.key: server(spec.key) for spec in specs}
    records: list[RequestRecord] = []
    scrapes: dict[str, list[float]] = {key: [] for key in servers}
    open_sessions = len(workload.sessions)
    groups: dict[str, int] = {}  # system prompt -> its group number
    sent = 0  # requests sent so far: the next goes to replica `sent % len(pickers)`

    def scrape(replica: _Replica, key: str) -> None:
        now = clock.now()
        replica.pool.apply_samples(key, servers[key].gauge_samples(), now, mark=replica.pool.scrape_mark())
        if keep_scrape_times and replica is pickers[0]:
            scrapes[key].append(now)
        if open_sessions and scrape_interval:
            clock.call_at(now + scrape_interval, scrape, replica, key)

    def session_done() -> None:
        nonlocal open_sessions
        open_sessions -= 1

    def send(index: int, session: Session, turn_index: int) -> None:
        nonlocal sent
        turn = session.turns[turn_index]
        now = clock.now()
        record = RequestRecord(index, turn_index, now)
        records.append(record)
        body = turn.body
        first = body["messages"][0]
        if first["role"] == "system":
            record.group = groups.setdefault(first["content"], len(groups))
        if reference is not None:
            key = reference.pick(servers, prompts(body), body["max_tokens"], body["model"])
            scheduler, decision = None, None
        else:
            replica = pickers[sent % len(pickers)]
            sent += 1
            if not scrape_interval:
                for polled in servers:
                    scrape(replica, polled)
            scheduler = replica.scheduler
            request = SchedulingRequest(
                target_model=body["model"],
                prompt=PromptInput.from_body(body, CHAT_PATH),
                headers={"content-type": "application/json"},
                request_id=f"{index}-{turn_index}",
                body=body,
            )
            decision = scheduler.schedule(request, now)
            if decision.outcome is not Outcome.PICKED:
                record.outcome = "shed" if decision.outcome is Outcome.SHED else "error"
                session_done()
                return
            assert decision.primary is not None  # a PICKED decision names its primary endpoint
            key = decision.primary
            scheduler.on_served(decision, key)
        record.endpoint = key

        def first_token(served) -> None:
            if scheduler is not None and decision is not None:
                scheduler.on_first_token(decision, clock.now())
            served.on_tokens = None  # the rest of the stream needs no per-token events

        def finished(served) -> None:
            now = clock.now()
            if scheduler is not None and decision is not None:
                scheduler.on_first_token(decision, served.first_token_at)  # no-op unless the first token was last
                scheduler.on_complete(decision, now)
            record.prompt_tokens = served.prompt_tokens
            record.output_tokens = served.output_tokens
            record.cached_tokens = served.cached_tokens
            record.first_token_at = served.first_token_at
            record.finished_at = now
            record.itl_runs = served.itl_runs
            if turn_index + 1 < len(session.turns):
                clock.call_at(now + session.turns[turn_index + 1].think, send, index, session, turn_index + 1)
            else:
                session_done()

        try:
            servers[key].submit(
                prompts(body),
                max_tokens=body["max_tokens"],
                model=body["model"],
                on_finish=finished,
                on_tokens=first_token,
            )
        except (InvalidRequestError, UnknownModelError):
            record.outcome = "error"
            if scheduler is not None and decision is not None:
                scheduler.on_complete(decision, now)
            session_done()

    pollers = [(replica, key) for replica in pickers for key in servers]
    for offset, (replica, key) in enumerate(pollers):  # staggered over one interval, as independent pollers are
        clock.call_at(-lead + offset * lead / len(pollers), scrape, replica, key)
    for index, session in enumerate(workload.sessions):
        clock.call_at(session.start, send, index, session, 0)
    clock.run_until_idle()
    end = max((r.finished_at for r in records if r.finished_at is not None), default=clock.now())
    return RunResult(records, scrapes, end)
