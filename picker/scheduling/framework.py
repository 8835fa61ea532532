"""The scheduling framework: plugin interfaces, the per-request cycle state, profiles and decisions.

A profile runs filters, then weighted scorers, then one picker:

- a `Filter` narrows the candidate endpoints;
- a `Scorer` gives each candidate a score, clamped to [0, 1], multiplied by the scorer's weight and summed
  (weights are not normalised);
- a `Picker` ranks candidates by the summed scores and returns the best `count` (primary + fallbacks).

Every plugin may also implement lifecycle hooks, called by the `Scheduler` only for plugins that override them:
`after_pick` (right after a request is scheduled: prefix-index credit, LRU updates), `on_first_token`,
`on_complete`, `response_headers` (headers to add to the client response, e.g. a session token),
`endpoint_removed` and `close` (the scheduler is retired); and, for the requests peer replicas of the picker sent
(`PeerPick`, from the load exchange), `on_peer_pick`, `on_peer_first_token` and `on_peer_complete`.

Plugins see candidates as sequences of `picker.pool.Endpoint` and return lists aligned with them. Each plugin
class declares its parameters and registers its type name (see `picker.scheduling.registry`); the framework knows
no particular plugin.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, mul
from typing import Any, ClassVar

from picker.pool.state import Endpoint, InflightTicket, PoolState
from picker.scheduling.registry import BuildContext, NoParameters, PluginParameters
from picker.scheduling.request import SchedulingRequest


class CycleState:
    """Everything one scheduling cycle shares between plugins: the request, the clock time and scratch data."""

    __slots__ = ("data", "now", "pool", "request", "step")

    def __init__(self, request: SchedulingRequest, now: float, pool: PoolState) -> None:
        self.request = request
        self.now = now
        self.pool = pool
        self.data: dict[str, Any] = {}  # plugin name -> whatever the plugin keeps for this request
        self.step: dict[int, Any] = {}  # id(plugin) -> what it computed for the scheduling step only

    def end(self) -> None:
        """Drop what only the scheduling step needed (`step`, e.g. prefix hashes), keeping `data` for later hooks."""
        self.step.clear()


class Outcome(enum.Enum):
    """How a scheduling cycle ended."""

    PICKED = "picked"
    SHED = "shed"  # priority < 0 under saturation: answer 429
    NO_ENDPOINT = "no_endpoint"  # no ready endpoint, or none the subset hint or steering allows: answer 503
    FILTERED_OUT = "filtered_out"  # the profile's filters left no endpoint of a non-empty pool: answer 429


@dataclass(slots=True)
class Decision:
    """The result of scheduling one request.

    `endpoints` holds the ranked `ip:port` keys (primary first, then fallbacks) when `outcome` is PICKED;
    `ticket` books the request on the primary until `Scheduler.on_complete`.
    """

    outcome: Outcome
    request: SchedulingRequest
    profile: str
    endpoints: tuple[str, ...] = ()
    reason: str = ""
    ticket: InflightTicket | None = None
    cycle: CycleState | None = None
    served: str | None = None
    first_token_at: float | None = None
    prefill: str | None = None  # the prefill endpoint of a disaggregated request (`ip:port`)
    request_headers: dict[str, str] = field(default_factory=dict)  # to set on the request the model server gets
    uncached_tokens: float | None = None  # prompt tokens the primary must compute, as a scorer predicted them
    shared_as: int | None = None  # the number under which peer replicas know the request (load exchange)

    @property
    def primary(self) -> str | None:
        """The chosen endpoint, or None if none was picked."""
        return self.endpoints[0] if self.endpoints else None

    @property
    def destination(self) -> str:
        """The value of `x-gateway-destination-endpoint`: the ranked endpoints joined by commas."""
        return ",".join(self.endpoints)


@dataclass(slots=True)
class PeerPick:
    """A request a peer replica of the picker sent to an endpoint of the pool, as this replica books it."""

    endpoint: str
    prompt_tokens: int
    uncached_tokens: float  # the prompt tokens the endpoint must compute, as the peer predicted them
    ticket: InflightTicket  # its booking in this replica's pool state (not among this picker's own in-flight)
    first_token: bool = False  # the peer saw its first token: its prefill is done
    data: dict[str, Any] = field(default_factory=dict)  # plugin name -> what the plugin keeps for this request


class Plugin:
    """Base of every plugin: a type name (as in EndpointPickerConfig) and an instance name.

    `Parameters` is the model of the plugin's EndpointPickerConfig parameters and `create` builds the plugin from
    them; plugins with a lower `build_order` are built first (producers of shared objects before their readers).
    """

    type_name: ClassVar[str] = ""
    Parameters: ClassVar[type[PluginParameters]] = NoParameters
    build_order: ClassVar[int] = 0

    def __init__(self, name: str = "") -> None:
        self.name = name or self.type_name

    @classmethod
    def create(cls, name: str, parameters: Any, context: BuildContext) -> Plugin:
        """The plugin named `name` built from its validated `Parameters`, sharing `context` with the config."""
        return cls(name)

    def attach(self, pool: PoolState) -> None:
        """Called when a scheduler over `pool` starts running the plugin (e.g. to subscribe to its endpoints)."""

    def prepare(self, body: Mapping[str, Any]) -> None:
        """Called on a worker thread with a request's parsed body before its scheduling cycle: slow per-request work
        (tokenizing) whose result the cycle then finds in the plugin's caches."""

    @property
    def prepare_min_bytes(self) -> int | None:
        """The smallest request body whose `prepare` work is worth a worker thread (0: every body, e.g. when the work
        is a network call; smaller bodies are prepared by the cycle itself); None when the plugin has none."""
        return None

    def needs_preparation(self) -> bool:
        """Whether `prepare` has work to do for a request arriving now (asked per request of a plugin that has
        `prepare_min_bytes`; a plugin whose work depends on the pool's state says no while there is none)."""
        return True

    def after_pick(self, cycle: CycleState, decision: Decision) -> None:
        """Called after a request was scheduled (outcome PICKED)."""

    def on_first_token(self, decision: Decision, ttft: float) -> None:
        """Called when the first response token of a scheduled request arrived, `ttft` seconds after dispatch."""

    def on_complete(self, decision: Decision, now: float) -> None:
        """Called when the response of a scheduled request ended."""

    def on_peer_pick(self, pick: PeerPick, now: float) -> None:
        """Called when a peer replica announced a request it sent to an endpoint of the pool."""

    def on_peer_first_token(self, pick: PeerPick, now: float) -> None:
        """Called when a peer replica announced the first token of a request it sent."""

    def on_peer_complete(self, pick: PeerPick, now: float) -> None:
        """Called when a peer's request ended (announced, or forgotten after the load book's TTL)."""

    def response_headers(self, decision: Decision, served: str) -> dict[str, str]:
        """Headers to add to the client response once `served` is known to have served the request."""
        return {}

    def endpoint_removed(self, key: str) -> None:
        """Called when an endpoint left the pool."""

    def shared_plugins(self) -> tuple[Plugin, ...]:
        """The shared plugins this plugin reads, e.g. a prefix index (they join the profile as plugins)."""
        return ()

    def close(self) -> None:
        """Called when the scheduler running the plugin is retired: release threads and sockets."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Filter(Plugin):
    """Narrows the candidates; returning an empty sequence means no endpoint is eligible."""

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        raise NotImplementedError


class Scorer(Plugin):
    """Scores candidates; the list is aligned with `endpoints` (values are clamped to [0, 1] by the scheduler)."""

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        raise NotImplementedError


class Picker(Plugin):
    """Ranks candidates by their summed scores; returns the indexes of the best `count`, best first.
    `max_endpoints` is the count the scheduler asks for unless it is given a number of fallbacks."""

    def __init__(self, name: str = "", max_endpoints: int = 1) -> None:
        super().__init__(name)
        self.max_endpoints = max_endpoints

    def pick(self, cycle: CycleState, endpoints: Sequence[Endpoint], scores: list[float], count: int) -> list[int]:
        raise NotImplementedError


class Admitter(Plugin):
    """Decides, before scheduling, whether a request is admitted (a refused request is answered 429)."""

    def admit(self, request: SchedulingRequest, endpoints: Sequence[Endpoint], now: float) -> bool:
        raise NotImplementedError


class ProfileHandler(Plugin):
    """Runs further profiles once the scheduler's profile picked the primary (e.g. a prefill profile after the
    decode profile); may set `Decision.prefill` and `Decision.request_headers`."""

    def bind(self, profiles: dict[str, Profile]) -> str | None:
        """Resolve the profiles the handler names; returns the name of the profile the scheduler runs (None: the
        config's first). Raises ConfigError for a profile or plugin it cannot find."""
        return None

    def after_primary(self, cycle: CycleState, decision: Decision) -> None:
        """Called after the primary was picked and booked, before the `after_pick` hooks."""


def score_candidates(
    cycle: CycleState,
    filters: Sequence[Filter],
    scorers: Sequence[tuple[Scorer, float]],
    candidates: Sequence[Endpoint],
) -> tuple[Sequence[Endpoint], list[float], Filter | None]:
    """Run filters, then weighted scorers (scores clamped to [0, 1]); returns (candidates, totals, the filter that
    left none, or None)."""
    for plugin in filters:
        candidates = plugin.filter(cycle, candidates)
        if not candidates:
            return (), [], plugin
    totals = [0.0] * len(candidates)
    for scorer, weight in scorers:
        scores = scorer.score(cycle, candidates)
        if scores and (min(scores) < 0.0 or max(scores) > 1.0):
            scores = [0.0 if s < 0.0 else 1.0 if s > 1.0 else s for s in scores]
        if weight != 1.0:
            scores = list(map(mul, scores, repeat(weight)))
        totals = list(map(add, totals, scores))
    return candidates, totals, None


@dataclass(slots=True)
class Profile:
    """Filters -> weighted scorers -> picker, plus the plugins that only take part through hooks, and the profile
    handler that runs further profiles after this one (if any)."""

    name: str
    filters: list[Filter]
    scorers: list[tuple[Scorer, float]]
    picker: Picker
    extra: list[Plugin] = field(default_factory=list)
    handler: ProfileHandler | None = None

    def plugins(self) -> list[Plugin]:
        """Every plugin of the profile once, including the shared plugins its plugins read."""
        seen: dict[int, Plugin] = {}
        handler = [self.handler] if self.handler is not None else []
        for plugin in [*self.filters, *(s for s, _ in self.scorers), self.picker, *self.extra, *handler]:
            seen.setdefault(id(plugin), plugin)
            for shared in plugin.shared_plugins():
                seen.setdefault(id(shared), shared)
        return list(seen.values())
