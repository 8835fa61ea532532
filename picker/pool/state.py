"""The picker's view of one InferencePool: its endpoints, their scraped metrics and the picker's own in-flight counts.

One endpoint per ready pod x target port, keyed `"ip:port"`. Discovery (Kubernetes watch or files) keeps the set
current with `set_endpoints` / `upsert` / `remove`; the scraper (or a simulator, directly) feeds metrics with
`apply_samples`, and the models poller records each endpoint's model list with `apply_served_models`; the
scheduler books requests with `dispatch` and `release`.

Between two scrapes the scraped queue is blind to the requests the picker has just sent. Each endpoint therefore
counts the requests dispatched since the last good scrape began that are still in flight (`unreflected`), which
scorers add to the scraped queue. Requests that peer replicas of the picker sent (booked with `own=False` from
their announcements) count there too, but not in the picker's own in-flight counts.

Time is whatever the injected clock says (seconds): the wall clock for a live picker, a virtual clock in benchmarks.
The state is not thread-safe; use it from one event loop (or one simulation thread).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.samples import Sample

from picker.pool.metrics import ENGINES, EngineMetricNames, EngineReading, engine_name, read_samples

Clock = Callable[[], float]


def endpoint_key(address: str, port: int) -> str:
    """Return the `ip:port` key of an endpoint (IPv6 addresses in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What discovery knows of one endpoint: a ready pod's address, one target port, its name and labels."""

    address: str
    port: int
    pod_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The endpoint's `ip:port` key."""
        return endpoint_key(self.address, self.port)


def specs_for_pod(
    address: str, ports: Iterable[int], pod_name: str = "", labels: Mapping[str, str] | None = None
) -> list[EndpointSpec]:
    """Return one EndpointSpec per target port of a ready pod (several ports = data-parallel ranks)."""
    return [EndpointSpec(address, port, pod_name, dict(labels or {})) for port in ports]


@dataclass(slots=True)
class EndpointMetrics:
    """The last good scrape of an endpoint, plus the health of its scraping.

    `updated_at` is the clock time of the last good scrape (None until the first one); `scrape_errors` counts the
    scrapes that failed since then; `unreachable` says that the latest scrape could not even connect (nothing listens
    at the endpoint: its server died or has not started), until the next good scrape.
    """

    waiting: int = 0
    running: int = 0
    kv_usage: float = 0.0
    block_size: int = 0
    num_gpu_blocks: int = 0
    max_lora: int = 0
    running_adapters: frozenset[str] = frozenset()
    waiting_adapters: frozenset[str] = frozenset()
    served_models: frozenset[str] | None = None  # the ids its last good `/v1/models` answer listed; None until one
    updated_at: float | None = None
    scrape_errors: int = 0
    last_error: str = ""
    unreachable: bool = False


class Endpoint:
    """One model-server endpoint: identity, scraped metrics and the picker's in-flight counters."""

    __slots__ = (
        "_open",
        "_reflected_seq",
        "address",
        "engine",
        "inflight",
        "inflight_tokens",
        "key",
        "labels",
        "metrics",
        "peer_inflight",
        "pod_name",
        "port",
        "unreflected",
    )

    def __init__(self, spec: EndpointSpec) -> None:
        self.key = spec.key
        self.metrics = EndpointMetrics()
        self.inflight = 0  # requests dispatched here and not finished
        self.inflight_tokens = 0  # their prompt tokens
        self.peer_inflight = 0  # requests peer replicas of the picker announced here and not finished
        self.unreflected = 0  # in-flight requests dispatched after the last good scrape began
        self._reflected_seq = 0  # pool dispatch number up to which the scraped metrics reflect dispatches
        self._open: dict[int, int] = {}  # pool dispatch number -> prompt tokens, of requests in flight here
        self.update_identity(spec)

    def update_identity(self, spec: EndpointSpec) -> None:
        """Take the address, pod name, labels and engine from a (possibly changed) spec."""
        self.address = spec.address
        self.port = spec.port
        self.pod_name = spec.pod_name
        self.labels = dict(spec.labels)
        self.engine: EngineMetricNames = ENGINES[engine_name(self.labels)]

    def metrics_age(self, now: float) -> float:
        """Seconds since the last good scrape (infinite if never scraped)."""
        updated = self.metrics.updated_at
        return math.inf if updated is None else now - updated

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"Endpoint({self.key} waiting={m.waiting} running={m.running} kv={m.kv_usage:.2f} "
            f"inflight={self.inflight} unreflected={self.unreflected})"
        )


class InflightTicket:
    """A request booked on an endpoint by `dispatch`; hand it back to `release` when the response ends."""

    __slots__ = ("dispatched_at", "endpoint_key", "own", "prompt_tokens", "released", "seq")

    def __init__(self, endpoint_key: str, seq: int, prompt_tokens: int, dispatched_at: float, own: bool = True) -> None:
        self.endpoint_key = endpoint_key
        self.seq = seq
        self.prompt_tokens = prompt_tokens
        self.dispatched_at = dispatched_at
        self.own = own  # sent by this picker (False: by a peer replica, see picker.scheduling.loadbook)
        self.released = False


class PoolState:
    """The endpoints of one pool and their state; see the module docstring."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._endpoints: dict[str, Endpoint] = {}
        self._dispatch_seq = 0  # numbers every dispatch in the pool
        self.known_adapters: set[str] = set()  # every LoRA adapter an endpoint of the pool has reported
        self._snapshot: tuple[Endpoint, ...] = ()
        self._added: list[Callable[[Endpoint], None]] = []
        self._removed: list[Callable[[str], None]] = []

    # -- membership -------------------------------------------------------------------------------------------

    def endpoints(self) -> tuple[Endpoint, ...]:
        """All endpoints, in the order they joined (a cached tuple; do not mutate)."""
        return self._snapshot

    def get(self, key: str) -> Endpoint | None:
        """Return the endpoint with this `ip:port` key, or None."""
        return self._endpoints.get(key)

    def __len__(self) -> int:
        return len(self._endpoints)

    def set_endpoints(self, specs: Iterable[EndpointSpec]) -> None:
        """Make the pool hold exactly these endpoints: add new ones, update known ones, remove the rest."""
        wanted = {spec.key: spec for spec in specs}
        for key in [key for key in self._endpoints if key not in wanted]:
            self.remove(key)
        for spec in wanted.values():
            self.upsert(spec)

    def upsert(self, spec: EndpointSpec) -> Endpoint:
        """Add an endpoint, or update the identity of a known one (its metrics and counters are kept)."""
        endpoint = self._endpoints.get(spec.key)
        if endpoint is not None:
            endpoint.update_identity(spec)
            return endpoint
        endpoint = Endpoint(spec)
        self._endpoints[spec.key] = endpoint
        self._snapshot = tuple(self._endpoints.values())
        for listener in self._added:
            listener(endpoint)
        return endpoint

    def remove(self, key: str) -> bool:
        """Remove an endpoint; returns whether it was there. Tickets still held for it release as no-ops."""
        if self._endpoints.pop(key, None) is None:
            return False
        self._snapshot = tuple(self._endpoints.values())
        for listener in self._removed:
            listener(key)
        return True

    def subscribe(
        self, added: Callable[[Endpoint], None] | None = None, removed: Callable[[str], None] | None = None
    ) -> None:
        """Call `added(endpoint)` / `removed(key)` whenever an endpoint joins or leaves the pool."""
        if added is not None:
            self._added.append(added)
        if removed is not None:
            self._removed.append(removed)

    # -- metrics ------------------------------------------------------------------------------------------------

    def scrape_mark(self) -> int:
        """Return the dispatch mark to pass to `apply_samples` for a scrape that starts now."""
        return self._dispatch_seq

    def apply_samples(self, key: str, samples: Iterable[Sample], now: float, mark: int | None = None) -> None:
        """Record a good scrape of an endpoint from its samples; raises MetricsError (and keeps the old values).

        `mark` is what `scrape_mark` returned when the scrape started: requests dispatched before it count as
        reflected in the scraped queue. Without a mark, every request dispatched so far counts as reflected.
        Samples for an endpoint that left the pool are ignored.
        """
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            self.apply_reading(key, read_samples(endpoint.engine, samples), now, mark)

    def apply_reading(self, key: str, reading: EngineReading, now: float, mark: int | None = None) -> None:
        """Record a good scrape of an endpoint from a reading of its engine's metrics (as `apply_samples`, once the
        samples are read); the scraper passes the previous reading again when an endpoint answers the same bytes."""
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return
        m = endpoint.metrics
        m.waiting = reading.waiting
        m.running = reading.running
        m.kv_usage = reading.kv_usage
        if reading.block_size is not None:
            m.block_size = reading.block_size
        if reading.num_gpu_blocks is not None:
            m.num_gpu_blocks = reading.num_gpu_blocks
        if reading.lora is not None:
            m.max_lora = reading.lora.max_lora
            m.running_adapters = reading.lora.running
            m.waiting_adapters = reading.lora.waiting
            self.known_adapters.update(reading.lora.running, reading.lora.waiting)
        m.updated_at = now
        m.scrape_errors = 0
        m.last_error = ""
        m.unreachable = False
        reflected = self._dispatch_seq if mark is None else mark
        if reflected > endpoint._reflected_seq:
            endpoint._reflected_seq = reflected
            endpoint.unreflected = sum(1 for seq in endpoint._open if seq > reflected)

    def apply_served_models(self, key: str, models: Iterable[str], adapters: Iterable[str] = ()) -> None:
        """Record an endpoint's model list (the ids of its `/v1/models` answer; `adapters` are those that are LoRA
        adapters). Ignored for an endpoint that left the pool."""
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            endpoint.metrics.served_models = frozenset(models)
            self.known_adapters.update(adapters)

    def record_scrape_error(self, key: str, error: str, unreachable: bool = False) -> int:
        """Count a failed scrape of an endpoint (last good values stay), `unreachable` when it could not connect;
        returns the consecutive error count."""
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return 0
        endpoint.metrics.scrape_errors += 1
        endpoint.metrics.last_error = error
        endpoint.metrics.unreachable = unreachable
        return endpoint.metrics.scrape_errors

    # -- in-flight accounting ---------------------------------------------------------------------------------

    def dispatch(self, key: str, prompt_tokens: int, now: float, own: bool = True) -> InflightTicket:
        """Book a request on an endpoint: it counts as not yet reflected in metrics and, when this picker sent it
        (`own`; a peer replica's request is not), as in flight."""
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            return InflightTicket(key, 0, prompt_tokens, now, own)
        self._dispatch_seq += 1
        seq = self._dispatch_seq
        endpoint._open[seq] = prompt_tokens
        if own:
            endpoint.inflight += 1
            endpoint.inflight_tokens += prompt_tokens
        else:
            endpoint.peer_inflight += 1
        endpoint.unreflected += 1
        return InflightTicket(key, seq, prompt_tokens, now, own)

    def release(self, ticket: InflightTicket) -> None:
        """Finish a booked request (idempotent; a no-op if its endpoint left the pool)."""
        if ticket.released:
            return
        ticket.released = True
        endpoint = self._endpoints.get(ticket.endpoint_key)
        if endpoint is None or endpoint._open.pop(ticket.seq, None) is None:
            return
        if ticket.own:
            endpoint.inflight -= 1
            endpoint.inflight_tokens -= ticket.prompt_tokens
        else:
            endpoint.peer_inflight -= 1
        if ticket.seq > endpoint._reflected_seq:
            endpoint.unreflected -= 1
