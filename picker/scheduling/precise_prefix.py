"""`precise-prefix-cache-producer`: prefix matches from what the engines report caching (their KV events).

Each endpoint's KV-event stream feeds a `picker.kvcache.BlockIndex` (connect layout with `discoverPods`: the picker
connects to `tcp://<pod ip>:<socketPort>`, and to `<replaySocketPort>` for replays; bind layout with `zmqEndpoint`:
the engines connect to the picker and the topic `kv@<pod>@<model>` names the endpoint). A request is tokenized as
the engine does (`picker.kvcache.tokenizer`: the `tokenizer.path` directory, else the config's `token-producer` when
it has a tokenizer (`vllm` backend), else the `/tokenize` endpoint of the first trusted engine), cut into the
engine's blocks and looked up: an endpoint's match is the number of leading blocks it caches. The picker's server
tokenizes each request ahead of its cycle on a worker thread (`prepare`); the cycle finds the tokens in the
tokenizer's cache.

Endpoints whose index is not trusted (no events yet, missed events: see `picker.kvcache.index`) get the approximate
index's estimate instead, as does every endpoint when the request cannot be tokenized; so a pool whose engines do
not publish events is scored exactly as with the approximate index. With `speculativeIndexing`, a pick credits the
request's blocks to the chosen endpoint until its events confirm them: while the request waits for its first token
(the engine publishes a prompt's blocks only once it computes them; at most `PENDING_HOLD` seconds), then for
`speculativeTTL` (default 2 s). A request that ends without a first token ends its speculation. Before, the credit
lasted `speculativeTTL` from the pick, and the first of several picks of a prompt ended it for all of them: a prompt
whose request queued longer than that looked uncached everywhere, and its next request was sent elsewhere.

Upstream parameters accepted: `tokenProcessorConfig` (`blockSize`/`blockSizeTokens`, `hashSeed`; poolgate takes the
block size from the events and never needs the engine's hash, so both only document the engine's settings),
`indexerConfig` (accepted, not used), `kvEventsConfig` (`zmqEndpoint`, `topicFilter`, `concurrency` (accepted),
`discoverPods`, `podDiscoveryConfig.socketPort` / `replaySocketPort`, `engineType`), `speculativeIndexing`,
`speculativeTTL`. poolgate's own: `tokenizer` (`path`: a directory with tokenizer.json and the chat template).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from picker.kvcache.index import BlockIndex, request_keys
from picker.kvcache.subscriber import EventSource, KVEventSubscriber
from picker.kvcache.tokenizer import EngineTokenizer, LocalTokenizer, RequestTokenizer
from picker.pool.state import Endpoint, PoolState
from picker.scheduling.framework import CycleState, Decision, Plugin
from picker.scheduling.prefix import PrefixIndex, PrefixMatch, shared_prefix_index
from picker.scheduling.registry import BuildContext, Duration, PluginParameters, plugin
from picker.scheduling.request import SchedulingRequest
from picker.scheduling.tokens import shared_token_producer

log = logging.getLogger(__name__)

DEFAULT_EVENTS_PORT = 5557
PENDING_HOLD = 60.0  # seconds a pick's speculative credit is held at most while the request waits for its first token


class TokenProcessorConfig(PluginParameters):
    blockSize: int = Field(default=16, gt=0)
    blockSizeTokens: int | None = Field(default=None, gt=0)
    hashSeed: str = ""


class PodDiscoveryConfig(PluginParameters):
    socketPort: int = Field(default=DEFAULT_EVENTS_PORT, gt=0, lt=65536)
    replaySocketPort: int | None = Field(default=None, gt=0, lt=65536)


class KVEventsConfig(PluginParameters):
    zmqEndpoint: str | None = None
    topicFilter: str = "kv@"
    concurrency: int = Field(default=4, gt=0)
    discoverPods: bool = True
    podDiscoveryConfig: PodDiscoveryConfig = PodDiscoveryConfig()
    engineType: Literal["vllm", "sglang"] = "vllm"


class TokenizerConfig(PluginParameters):
    path: str | None = Field(default=None, min_length=1)


class EngineTokenizers:
    """Tokenizes through the `/tokenize` endpoint of an engine of the pool (one client per endpoint)."""

    def __init__(self) -> None:
        self._clients: dict[str, EngineTokenizer] = {}

    def for_endpoint(self, key: str) -> RequestTokenizer:
        """The tokenizer of the engine at `key` (`ip:port`)."""
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = EngineTokenizer(f"http://{key}")
        return client

    def forget(self, key: str) -> None:
        """Drop the client of an endpoint that left the pool."""
        self._clients.pop(key, None)


@plugin("precise-prefix-cache-producer")
class PrecisePrefixCacheProducer(Plugin):
    """Prefix matches from the engines' KV events, with the approximate index as the fallback per endpoint."""

    class Parameters(PluginParameters):
        tokenProcessorConfig: TokenProcessorConfig = TokenProcessorConfig()
        indexerConfig: dict[str, Any] = Field(default_factory=dict)
        kvEventsConfig: KVEventsConfig = KVEventsConfig()
        speculativeIndexing: bool = False
        speculativeTTL: Duration = 2.0
        tokenizer: TokenizerConfig = TokenizerConfig()

    build_order = -1

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> PrecisePrefixCacheProducer:
        events = parameters.kvEventsConfig
        path = parameters.tokenizer.path
        return cls(
            name,
            approximate=shared_prefix_index(context, None, name),
            tokenizer=LocalTokenizer(path) if path else shared_token_producer(context).request_tokenizer,
            bind=events.zmqEndpoint if not events.discoverPods else None,
            events_port=events.podDiscoveryConfig.socketPort,
            replay_port=events.podDiscoveryConfig.replaySocketPort,
            topic_filter=events.topicFilter,
            speculative_ttl=parameters.speculativeTTL if parameters.speculativeIndexing else 0.0,
        )

    def __init__(
        self,
        name: str = "",
        *,
        approximate: PrefixIndex,
        tokenizer: RequestTokenizer | None = None,
        bind: str | None = None,
        events_port: int = DEFAULT_EVENTS_PORT,
        replay_port: int | None = None,
        topic_filter: str = "kv@",
        speculative_ttl: float = 0.0,
    ) -> None:
        super().__init__(name)
        self.approximate = approximate
        self.tokenizer = tokenizer
        self.engine_tokenizers = EngineTokenizers()
        self.bind = bind
        self.events_port = events_port
        self.replay_port = replay_port
        self.topic_filter = topic_filter
        self.index = BlockIndex(speculative_ttl)
        self.subscriber: KVEventSubscriber | None = None
        self._pool: PoolState | None = None

    def shared_plugins(self) -> tuple[Plugin, ...]:
        return (self.approximate,)

    # -- subscriptions ----------------------------------------------------------------------------------------------

    def attach(self, pool: PoolState) -> None:
        """Subscribe to the events of every endpoint of `pool`, now and as endpoints join (once per plugin: when
        its scheduler starts, so that the engines' first events are not missed)."""
        if self._pool is not None:
            return
        self._pool = pool
        self.subscriber = KVEventSubscriber(
            self.index, topic_filter=self.topic_filter, bind=self.bind, resolve_topic=self._endpoint_of_topic
        )
        self.subscriber.start()
        if self.bind is None:
            pool.subscribe(added=self._subscribe)
            for endpoint in pool.endpoints():
                self._subscribe(endpoint)

    def attach_fed(self, pool: PoolState, tokenizer: RequestTokenizer) -> None:
        """Serve `pool` without subscribing: the caller applies the engines' event batches to `self.index` itself,
        in order, and `tokenizer` tokenizes as its engines do (the virtual-clock routing benchmark)."""
        self._pool = pool
        self.tokenizer = tokenizer

    def _subscribe(self, endpoint: Endpoint) -> None:
        assert self.subscriber is not None
        replay = f"tcp://{endpoint.address}:{self.replay_port}" if self.replay_port else None
        self.subscriber.add(EventSource(endpoint.key, f"tcp://{endpoint.address}:{self.events_port}", replay))

    def _endpoint_of_topic(self, topic: str) -> str | None:
        """The endpoint a `kv@<pod>@<model>` topic names: by pod name, address or `ip:port` key."""
        parts = topic.split("@")
        if len(parts) < 2 or self._pool is None:
            return None
        pod = parts[1]
        for endpoint in self._pool.endpoints():
            if pod in (endpoint.pod_name, endpoint.address, endpoint.key):
                return endpoint.key
        return None

    def endpoint_removed(self, key: str) -> None:
        if self.subscriber is not None:
            self.subscriber.remove(key)
        else:
            self.index.remove_endpoint(key)
        self.engine_tokenizers.forget(key)

    def close(self) -> None:
        """Stop the event subscription."""
        if self.subscriber is not None:
            self.subscriber.stop()
            self.subscriber = None

    # -- matching -----------------------------------------------------------------------------------------------------

    def trusted_endpoints(self, endpoints: Sequence[Endpoint]) -> list[str]:
        """The endpoints whose event index is trusted, with the block size of the first of them."""
        trusted = [e.key for e in endpoints if self.index.reliable(e.key) and self.index.block_size(e.key)]
        block_size = self.index.block_size(trusted[0]) if trusted else 0
        return [key for key in trusted if self.index.block_size(key) == block_size]  # others: approximate

    def prepare(self, body: Mapping[str, Any]) -> None:
        """Tokenize the request ahead of its cycle, with the tokenizer the cycle will use (into its cache)."""
        self.approximate.prepare(body)
        trusted = self.trusted_endpoints(self._pool.endpoints()) if self._pool is not None else []
        if trusted:
            self.tokenizer_for(trusted[0]).tokenize(body)

    @property
    def prepare_min_bytes(self) -> int | None:
        """Every body when the engines tokenize (a network call), else the local tokenizer's threshold."""
        return self.tokenizer.off_loop_min_bytes if self.tokenizer is not None else 0

    def needs_preparation(self) -> bool:
        """With a tokenizer of its own, always. When the engines tokenize, only while some engine's event index is
        trusted: requests are matched against the others by the approximate index, whose token producer then has
        no tokenizer either (the config's one), so there is nothing to prepare."""
        return self.tokenizer is not None or self.index.any_reliable()

    def tokenizer_for(self, engine: str) -> RequestTokenizer:
        """The tokenizer of requests matched against the engine at `engine`."""
        return self.tokenizer or self.engine_tokenizers.for_endpoint(engine)

    def request_tokens(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        """The request's prompt tokens as the engine at `engine` sees them (None when they cannot be known)."""
        if request.body is None:
            return None
        return self.tokenizer_for(engine).tokenize(request.body)

    def request_keys(self, request: SchedulingRequest, tokens: Sequence[int], block_size: int) -> list[int]:
        """The block keys of the request's tokens (LoRA adapter and cache salt included)."""
        model = request.target_model
        is_adapter = request.base_model not in (None, model) or (
            self._pool is not None and model in self._pool.known_adapters
        )
        adapter = model if is_adapter else None
        return request_keys(tokens, block_size, adapter, request.prompt.cache_salt)

    def predicted_cached_tokens(self, request: SchedulingRequest, endpoint: str, now: float) -> int | None:
        """How many of the request's prompt tokens the engine at `endpoint` will find in its prefix cache, from its
        events only (no speculation); None when its index is not trusted or the request cannot be tokenized."""
        block_size = self.index.block_size(endpoint)
        if not self.index.reliable(endpoint) or not block_size:
            return None
        tokens = self.request_tokens(request, endpoint)
        if tokens is None:
            return None
        keys = self.request_keys(request, tokens, block_size)
        return self.index.matched_blocks(keys, [endpoint], now, speculative=False)[endpoint] * block_size

    def cycle_match(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> PrefixMatch:
        """The cycle's request matched against the event index (trusted endpoints) and the approximate index
        (the others), computed once per cycle."""
        match: PrefixMatch | None = cycle.step.get(id(self))
        if match is not None:
            return match
        self.attach(cycle.pool)
        approximate = self.approximate.cycle_match(cycle, endpoints)
        trusted = self.trusted_endpoints(endpoints)
        block_size = self.index.block_size(trusted[0]) if trusted else 0
        tokens = self.request_tokens(cycle.request, trusted[0]) if trusted else None
        if tokens is None:
            match = approximate
        else:
            keys = self.request_keys(cycle.request, tokens, block_size)
            matched: dict[str, int] = dict(self.index.matched_blocks(keys, trusted, cycle.now))
            for e in endpoints:
                if e.key not in matched:
                    matched[e.key] = int(approximate.ratio(e.key) * len(keys))  # the approximate share, in these blocks
            match = PrefixMatch(keys, block_size, matched)
            cycle.data[self.name] = keys
        cycle.step[id(self)] = match
        return match

    def after_pick(self, cycle: CycleState, decision: Decision) -> None:
        """Credit the pick to the approximate index, and speculatively the request's blocks to the chosen endpoint
        (when speculative indexing is on)."""
        self.approximate.after_pick(cycle, decision)  # crediting twice (if it is in the profile too) changes nothing
        keys = cycle.data.get(self.name)
        if keys and decision.primary is not None:
            # held while the request waits for its prefill (its events come only then), up to a bound
            self.index.speculate(decision.primary, keys, cycle.now, max(self.index.speculative_ttl, PENDING_HOLD))

    def on_first_token(self, decision: Decision, ttft: float) -> None:
        """The engine has computed the prompt, so its events are on their way: the speculation lasts
        `speculativeTTL` from now."""
        if decision.first_token_at is not None:
            self._respeculate(decision, decision.first_token_at, None)

    def on_complete(self, decision: Decision, now: float) -> None:
        """A request that ended without a first token may never have computed its prompt: its speculation ends."""
        if decision.first_token_at is None:
            self._respeculate(decision, now, 0.0)

    def _respeculate(self, decision: Decision, now: float, ttl: float | None) -> None:
        keys = decision.cycle.data.get(self.name) if decision.cycle is not None else None
        endpoint = decision.served or decision.primary
        if keys and endpoint is not None:
            self.index.speculate(endpoint, keys, now, ttl)
