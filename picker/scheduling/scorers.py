"""Scorer plugins with the reference picker's semantics (type names as in EndpointPickerConfig).

- `queue-scorer`: min-max over the candidates of waiting requests, (max - q) / (max - min), all equal -> 1.0; an
  endpoint not scraped yet counts as 0 waiting, as upstream (so it scores 1.0).
- `kv-cache-utilization-scorer`: 1 - KV-cache usage (not scraped yet: usage 0, score 1.0, as upstream).
- `load-aware-scorer`: waiting requests against `threshold` (default 128; <= 0 means the default):
  0.5 x (1 - min(waiting, threshold) / threshold), so an empty queue scores 0.5.
- `running-requests-size-scorer`: the same min-max over running requests.
- `active-request-scorer`: from the picker's own in-flight counts: <= idleThreshold -> 1.0,
  else (max - n) / max x maxBusyScore.
- `prefix-cache-scorer`: matched prefix blocks / request blocks, from the prefix-match producer named by
  `prefixMatchInfoProducerName` (default: the config's shared approximate prefix index).
- `lora-affinity-scorer`: adapter running 1.0; room to load one (running + waiting adapters < max) 0.8;
  adapter waiting 0.6; else 0.
- `session-affinity-scorer`: 1.0 for the endpoint the session token names, 0 elsewhere. The token is
  base64(`ip:port`) of the endpoint that served the session's previous request; it goes back to the client in a
  response header and the client replays it.
- `no-hit-lru-scorer`: for a request no candidate has any prefix of ("cold"), endpoints that never took a cold
  request score highest, then the least recently used for cold requests; other requests score 0.5 everywhere.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter

from pydantic import Field

from picker.pool.state import Endpoint
from picker.scheduling.framework import CycleState, Decision, Plugin, Scorer
from picker.scheduling.prefix import (
    PrefixIndex,
    PrefixIndexParameters,
    PrefixMatchProducer,
    prefix_match_producer,
    shared_prefix_index,
)
from picker.scheduling.registry import BuildContext, ConfigError, PluginParameters, plugin
from poolgate.api.contract import SESSION_TOKEN_HEADER

_key = attrgetter("key")


def _min_max_inverse(values: list[int]) -> list[float]:
    """Score lower values higher: (max - v) / (max - min), 1.0 when all are equal."""
    if not values:
        return []
    low, high = min(values), max(values)
    if low == high:
        return [1.0] * len(values)
    span = high - low
    return [(high - v) / span for v in values]


@plugin("queue-scorer")
class QueueScorer(Scorer):
    """Prefers endpoints with fewer waiting requests (min-max normalised)."""

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        return _min_max_inverse([e.metrics.waiting for e in endpoints])


@plugin("kv-cache-utilization-scorer", "kv-cache-scorer")  # second name: the older upstream type
class KvCacheUtilizationScorer(Scorer):
    """Prefers endpoints with free KV cache: 1 - usage."""

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        return [1.0 - e.metrics.kv_usage for e in endpoints]


@plugin("load-aware-scorer")
class LoadAwareScorer(Scorer):
    """Spreads load by waiting requests: an empty queue 0.5, else 0.5 x (1 - min(waiting, threshold) / threshold)."""

    class Parameters(PluginParameters):
        threshold: int = 128

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> LoadAwareScorer:
        return cls(name, threshold=parameters.threshold if parameters.threshold > 0 else 128)  # as upstream

    def __init__(self, name: str = "", *, threshold: int = 128) -> None:
        super().__init__(name)
        self.threshold = threshold

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        threshold = self.threshold
        return [0.5 * (1.0 - min(e.metrics.waiting, threshold) / threshold) for e in endpoints]


@plugin("running-requests-size-scorer")
class RunningRequestsScorer(Scorer):
    """Prefers endpoints with fewer running requests (min-max normalised)."""

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        return _min_max_inverse([e.metrics.running for e in endpoints])


@plugin("active-request-scorer")
class ActiveRequestScorer(Scorer):
    """Prefers endpoints with fewer requests in flight from this picker (its own counters, no scrape lag)."""

    class Parameters(PluginParameters):
        idleThreshold: int = Field(default=0, ge=0)
        maxBusyScore: float = Field(default=1.0, ge=0, le=1)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> ActiveRequestScorer:
        return cls(name, idle_threshold=parameters.idleThreshold, max_busy_score=parameters.maxBusyScore)

    def __init__(self, name: str = "", *, idle_threshold: int = 0, max_busy_score: float = 1.0) -> None:
        super().__init__(name)
        if idle_threshold < 0 or not 0.0 <= max_busy_score <= 1.0:
            raise ValueError("idleThreshold must be >= 0 and maxBusyScore within [0, 1]")
        self.idle_threshold = idle_threshold
        self.max_busy_score = max_busy_score

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        counts = [e.inflight for e in endpoints]
        busiest = max(counts, default=0)
        idle = self.idle_threshold
        return [1.0 if n <= idle else (busiest - n) / busiest * self.max_busy_score for n in counts]


@plugin("prefix-cache-scorer")
class PrefixCacheScorer(Scorer):
    """Prefers endpoints that (probably) cache a longer prefix of the prompt: matched blocks / request blocks."""

    class Parameters(PluginParameters):
        """`prefixMatchInfoProducerName` names the plugin whose prefix matches the scorer reads (default: the
        config's approximate prefix index); the index parameters may come with the scorer itself (older configs)."""

        prefixMatchInfoProducerName: str | None = Field(default=None, min_length=1)
        blockSizeTokens: int | None = Field(default=None, gt=0)
        maxPrefixTokensToMatch: int | None = Field(default=None, ge=0)
        maxPrefixBlocksToMatch: int | None = Field(default=None, ge=0)
        lruCapacityPerServer: int | None = Field(default=None, gt=0)
        autoTune: bool | None = None

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> PrefixCacheScorer:
        given = parameters.model_dump(exclude_none=True)
        producer_name = given.pop("prefixMatchInfoProducerName", None)
        if producer_name is None or (producer_name == PrefixIndex.type_name and producer_name not in context.plugins):
            index_parameters = PrefixIndexParameters(**given) if given else None
            return cls(name, producer=shared_prefix_index(context, index_parameters, name))
        if given:
            raise ConfigError(
                f"plugin {name!r}: give the prefix index parameters {sorted(given)} to {producer_name!r}, "
                "not to the scorer that reads it"
            )
        return cls(name, producer=prefix_match_producer(context, producer_name, name))

    def __init__(self, name: str = "", *, producer: PrefixMatchProducer) -> None:
        super().__init__(name)
        self.producer = producer

    def shared_plugins(self) -> tuple[Plugin, ...]:
        return (self.producer,) if isinstance(self.producer, Plugin) else ()

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        match = self.producer.cycle_match(cycle, endpoints)
        if not match.matched:
            return [0.0] * len(endpoints)
        total = len(match.hashes)
        return [blocks / total for blocks in map(match.matched.get, map(_key, endpoints), repeat(0))]


@plugin("lora-affinity-scorer")
class LoraAffinityScorer(Scorer):
    """Prefers endpoints where the requested adapter is loaded, or can be."""

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        model = cycle.request.target_model
        scores = []
        for e in endpoints:
            m = e.metrics
            if model in m.running_adapters:
                scores.append(1.0)
            elif len(m.running_adapters) + len(m.waiting_adapters) < m.max_lora:
                scores.append(0.8)
            elif model in m.waiting_adapters:
                scores.append(0.6)
            else:
                scores.append(0.0)
        return scores


def encode_session_token(key: str) -> str:
    """The session token that routes a client's next requests to endpoint `key`."""
    return base64.b64encode(key.encode()).decode()


def decode_session_token(token: str) -> str | None:
    """The endpoint key a session token names, or None if it is not valid base64 text."""
    try:
        return base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


@plugin("session-affinity-scorer")
class SessionAffinityScorer(Scorer):
    """Sends a session's requests back to the endpoint that served its previous one."""

    class Parameters(PluginParameters):
        headerName: str = Field(default=SESSION_TOKEN_HEADER, min_length=1)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> SessionAffinityScorer:
        return cls(name, header_name=parameters.headerName)

    def __init__(self, name: str = "", *, header_name: str = SESSION_TOKEN_HEADER) -> None:
        super().__init__(name)
        self.header_name = header_name.lower()

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        token = cycle.request.headers.get(self.header_name)
        key = decode_session_token(token) if token else None
        return [1.0 if e.key == key else 0.0 for e in endpoints]

    def response_headers(self, decision: Decision, served: str) -> dict[str, str]:
        return {self.header_name: encode_session_token(served)}


@plugin("no-hit-lru-scorer")
class NoHitLruScorer(Scorer):
    """Spreads cold requests (no prefix hit anywhere) over the endpoints least recently given a cold request."""

    class Parameters(PluginParameters):
        lruSize: int = Field(default=1024, gt=0)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> NoHitLruScorer:
        return cls(name, index=shared_prefix_index(context, None, name), lru_size=parameters.lruSize)

    def __init__(self, name: str = "", *, index: PrefixIndex, lru_size: int = 1024) -> None:
        super().__init__(name)
        if lru_size <= 0:
            raise ValueError("lruSize must be positive")
        self.index = index
        self.lru_size = lru_size
        self._cold: OrderedDict[str, None] = OrderedDict()  # endpoint keys, least recently cold-picked first

    def shared_plugins(self) -> tuple[Plugin, ...]:
        return (self.index,)

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        matched = self.index.cycle_match(cycle, endpoints).matched
        cold = not any(matched.get(e.key) for e in endpoints)
        cycle.data[self.name] = cold
        n = len(endpoints)
        if not cold:
            return [0.5] * n
        if n == 1:
            return [1.0]
        positions = {key: i for i, key in enumerate(self._cold)}
        never_used = [e for e in endpoints if e.key not in positions]
        scores = {}
        for rank, e in enumerate(never_used):
            scores[e.key] = 1.0 - rank / (n - 1)
        for e in endpoints:
            if e.key in positions:
                scores[e.key] = max(0.0, 1.0 - (len(never_used) + positions[e.key]) / (n - 1))
        return [scores[e.key] for e in endpoints]

    def after_pick(self, cycle: CycleState, decision: Decision) -> None:
        if cycle.data.get(self.name) and decision.primary is not None:
            self._cold.pop(decision.primary, None)
            self._cold[decision.primary] = None
            if len(self._cold) > self.lru_size:
                self._cold.popitem(last=False)

    def endpoint_removed(self, key: str) -> None:
        self._cold.pop(key, None)
