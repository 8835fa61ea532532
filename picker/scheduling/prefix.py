"""Approximate prefix-cache affinity as the reference picker (v0.9+) does it: hashed token blocks, per-endpoint LRUs.

Tokens: the config's `token-producer` (see `picker.scheduling.tokens`; the `estimate` backend when none is declared)
gives the prompt's token IDs. Blocks: `block size` tokens each, where the block size is the first candidate's
reported vLLM `block_size` (`vllm:cache_config_info`, with `autoTune`) or `blockSizeTokens` (default 16), clamped to
at least 64 tokens. At most `maxPrefixTokensToMatch` / block size blocks are hashed (131,072 tokens by default;
`maxPrefixBlocksToMatch` caps instead when the token cap is 0). A prompt shorter than one block has no blocks; a
trailing partial block is hashed. Hashes are chained xxHash64 values over the blocks' little-endian uint32 token
IDs: the seed is xxh64(target model + cache_salt) and block i hashes to xxh64(block + le64(hash of block i-1)).

Index: per endpoint an LRU of block hashes whose capacity is the endpoint's `num_gpu_blocks` at the time its LRU is
created (auto-tuning; `lruCapacityPerServer`, 31,250, otherwise). After a pick, every block of the request is
credited to the chosen endpoint (and to the prefill endpoint of a disaggregated request): the picker assumes the
server now caches the whole prompt and is never told of evictions. An endpoint's match is the number of the
request's blocks it holds among the leading blocks that some endpoint holds (the walk stops at the first block no
endpoint holds); the prefix score is match / total blocks.

A prefix-match producer is any plugin with `cycle_match(cycle, endpoints) -> PrefixMatch` (`PrefixMatchProducer`);
`prefix-cache-scorer` reads the one its `prefixMatchInfoProducerName` names.

Memory: one dict maps each block hash to a bitmask of the endpoints holding it, and each endpoint has an
OrderedDict LRU sharing the hash objects, about 200 bytes per (endpoint, block) entry.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import xxhash
from pydantic import Field

from picker.pool.state import Endpoint
from picker.scheduling.framework import CycleState, Decision, Plugin
from picker.scheduling.registry import BuildContext, ConfigError, PluginParameters, plugin
from picker.scheduling.request import SchedulingRequest
from picker.scheduling.tokens import TOKEN_BYTES, TokenizedPrompt, TokenProducer, shared_token_producer

DEFAULT_BLOCK_SIZE_TOKENS = 16
MIN_BLOCK_SIZE_TOKENS = 64  # upstream clamps the block size (configured or auto-tuned) to at least this
DEFAULT_MAX_PREFIX_TOKENS = 131072
DEFAULT_MAX_PREFIX_BLOCKS = 256
DEFAULT_LRU_CAPACITY = 31250

_hash = xxhash.xxh64_intdigest
_pack_u64 = struct.Struct("<Q").pack


def prefix_hashes(data: bytes, model: str, cache_salt: str, block_bytes: int, max_blocks: int) -> list[int]:
    """Return the chained block hashes of `data` (token IDs as bytes; see the module docstring); `max_blocks` 0 is
    no cap."""
    if len(data) < block_bytes:
        return []
    previous = _hash((model + cache_salt).encode("utf-8"))
    end = min(len(data), block_bytes * max_blocks) if max_blocks else len(data)
    hashes = []
    for start in range(0, end, block_bytes):
        previous = _hash(data[start : start + block_bytes] + _pack_u64(previous))
        hashes.append(previous)
    return hashes


@dataclass(slots=True)
class PrefixMatch:
    """A request's block hashes and, per endpoint key, how many of them the producer credits to that endpoint."""

    hashes: list[int]
    block_tokens: int
    matched: dict[str, int]

    @property
    def total(self) -> int:
        """How many blocks the request has."""
        return len(self.hashes)

    def ratio(self, key: str) -> float:
        """The prefix-cache score of an endpoint: matched blocks / total blocks (0 for a prompt without blocks)."""
        return self.matched.get(key, 0) / len(self.hashes) if self.hashes else 0.0

    def cached_tokens(self, key: str) -> int:
        """Prompt tokens an endpoint probably caches (matched blocks, in tokens)."""
        return self.matched.get(key, 0) * self.block_tokens


@runtime_checkable
class PrefixMatchProducer(Protocol):
    """What `prefix-cache-scorer` reads: per cycle, how much of the request's prefix each candidate caches."""

    name: str

    def cycle_match(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> PrefixMatch: ...


class PrefixIndexParameters(PluginParameters):
    blockSizeTokens: int = Field(default=DEFAULT_BLOCK_SIZE_TOKENS, gt=0)
    maxPrefixTokensToMatch: int = Field(default=DEFAULT_MAX_PREFIX_TOKENS, ge=0)
    maxPrefixBlocksToMatch: int = Field(default=DEFAULT_MAX_PREFIX_BLOCKS, ge=0)
    lruCapacityPerServer: int = Field(default=DEFAULT_LRU_CAPACITY, gt=0)
    autoTune: bool = True


_SHARED_INDEX = "prefix-index"


def shared_prefix_index(context: BuildContext, parameters: PrefixIndexParameters | None, owner: str) -> PrefixIndex:
    """The one prefix index of a config: built by its first user (with `parameters`, or the defaults when None);
    a later user giving different parameters is a ConfigError naming `owner`."""
    current: tuple[PrefixIndexParameters, PrefixIndex] | None = context.shared.get(_SHARED_INDEX)
    if current is not None:
        if parameters is not None and parameters != current[0]:
            raise ConfigError(
                f"plugin {owner!r}: its prefix index parameters differ from those already set; "
                "one config has one prefix index (declare an approx-prefix-cache-producer)"
            )
        return current[1]
    p = parameters or PrefixIndexParameters()
    index = PrefixIndex(
        owner if parameters is not None else "",
        tokens=shared_token_producer(context),
        block_size_tokens=p.blockSizeTokens,
        max_prefix_tokens=p.maxPrefixTokensToMatch,
        max_prefix_blocks=p.maxPrefixBlocksToMatch,
        lru_capacity=p.lruCapacityPerServer,
        auto_tune=p.autoTune,
    )
    context.shared[_SHARED_INDEX] = (p, index)
    return index


def prefix_match_producer(context: BuildContext, producer_name: str | None, owner: str) -> PrefixMatchProducer:
    """The prefix-match producer a plugin reads: the declared plugin `producer_name` names, or the config's shared
    approximate index when none is named; naming anything else is a ConfigError naming `owner`."""
    if producer_name is None or (producer_name == PrefixIndex.type_name and producer_name not in context.plugins):
        return shared_prefix_index(context, None, owner)
    producer = context.plugins.get(producer_name)
    if not isinstance(producer, PrefixMatchProducer):
        raise ConfigError(
            f"plugin {owner!r}: prefixMatchInfoProducerName {producer_name!r} names no declared prefix-match "
            "producer (approx-prefix-cache-producer or precise-prefix-cache-producer)"
        )
    return producer


@plugin("approx-prefix-cache-producer")
class PrefixIndex(Plugin):
    """The shared approximate prefix-cache index of a set of profiles (EndpointPickerConfig type
    `approx-prefix-cache-producer`); scorers that read it add it to their profile, which credits picks to it."""

    Parameters = PrefixIndexParameters
    build_order = -1  # before the scorers that read it, so that they share its parameters

    @classmethod
    def create(cls, name: str, parameters: PrefixIndexParameters, context: BuildContext) -> PrefixIndex:
        return shared_prefix_index(context, parameters, name)

    def __init__(
        self,
        name: str = "",
        *,
        tokens: TokenProducer | None = None,
        block_size_tokens: int = DEFAULT_BLOCK_SIZE_TOKENS,
        max_prefix_tokens: int = DEFAULT_MAX_PREFIX_TOKENS,
        max_prefix_blocks: int = DEFAULT_MAX_PREFIX_BLOCKS,
        lru_capacity: int = DEFAULT_LRU_CAPACITY,
        auto_tune: bool = True,
    ) -> None:
        super().__init__(name)
        if min(block_size_tokens, lru_capacity) <= 0 or min(max_prefix_tokens, max_prefix_blocks) < 0:
            raise ValueError("prefix index sizes must be positive (the caps may be 0: no cap)")
        self.tokens = tokens if tokens is not None else TokenProducer()
        self.block_size_tokens = block_size_tokens
        self.max_prefix_tokens = max_prefix_tokens
        self.max_prefix_blocks = max_prefix_blocks
        self.lru_capacity = lru_capacity
        self.auto_tune = auto_tune
        self._owners: dict[int, int] = {}  # block hash -> bitmask of endpoint slots holding it
        self._slots: dict[str, int] = {}  # endpoint key -> slot
        self._slot_keys: list[str] = []  # slot -> endpoint key ("" for a free slot)
        self._lrus: list[OrderedDict[int, None] | None] = []  # slot -> LRU of block hashes
        self._capacity: list[int] = []
        self._free: list[int] = []

    # -- reading --------------------------------------------------------------------------------------------

    @property
    def prepare_min_bytes(self) -> int | None:
        """Its token producer's threshold."""
        return self.tokens.prepare_min_bytes

    def prepare(self, body: Mapping[str, Any]) -> None:
        """Tokenize the request ahead of its cycle (a token producer with a tokenizer; nothing for `estimate`)."""
        self.tokens.prepare(body)

    def cycle_match(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> PrefixMatch:
        """The cycle's request matched against the index, computed once per cycle whichever plugin asks first."""
        match: PrefixMatch | None = cycle.step.get(id(self))
        if match is None:
            tokens = self.tokens.cycle_tokens(cycle)
            match = cycle.step[id(self)] = self._match(cycle.request, tokens, endpoints)
        return match

    def block_tokens(self, endpoints: Sequence[Endpoint]) -> int:
        """The block size in tokens for these candidates (auto-tuned from the first one, clamped to >= 64)."""
        size = self.block_size_tokens
        if self.auto_tune and endpoints and endpoints[0].metrics.block_size > 0:
            size = endpoints[0].metrics.block_size
        return max(size, MIN_BLOCK_SIZE_TOKENS)

    def max_blocks(self, block_tokens: int) -> int:
        """How many blocks are hashed at most (0: no cap)."""
        if self.max_prefix_tokens:
            return max(1, self.max_prefix_tokens // block_tokens)
        return self.max_prefix_blocks

    def match(self, request: SchedulingRequest, endpoints: Sequence[Endpoint]) -> PrefixMatch:
        """Hash the request's prompt and find how many of its leading blocks each endpoint holds."""
        return self._match(request, self.tokens.backend.tokenize(request), endpoints)

    def _match(self, request: SchedulingRequest, tokens: TokenizedPrompt, endpoints: Sequence[Endpoint]) -> PrefixMatch:
        block_tokens = self.block_tokens(endpoints)
        hashes = prefix_hashes(
            tokens.ids,
            request.target_model,
            request.prompt.cache_salt,
            block_tokens * TOKEN_BYTES,
            self.max_blocks(block_tokens),
        )
        return PrefixMatch(hashes, block_tokens, self.matches(hashes))

    def matches(self, hashes: Sequence[int]) -> dict[str, int]:
        """Per endpoint key, how many of the leading hashes (up to the first one nobody holds) it holds."""
        owners = self._owners
        segments: list[tuple[int, int]] = []  # runs of equal owner masks: (mask, length)
        mask_run, run = 0, 0
        for block_hash in hashes:
            mask = owners.get(block_hash, 0)
            if not mask:
                break
            if mask == mask_run:
                run += 1
            else:
                if run:
                    segments.append((mask_run, run))
                mask_run, run = mask, 1
        if run:
            segments.append((mask_run, run))
        counts: dict[str, int] = {}
        slot_keys = self._slot_keys
        for mask, length in segments:
            while mask:
                low = mask & -mask
                key = slot_keys[low.bit_length() - 1]
                counts[key] = counts.get(key, 0) + length
                mask ^= low
        return counts

    def block_count(self, key: str) -> int:
        """How many blocks the index credits to an endpoint."""
        slot = self._slots.get(key)
        lru = self._lrus[slot] if slot is not None else None
        return len(lru) if lru is not None else 0

    def capacity(self, key: str) -> int | None:
        """The LRU capacity of an endpoint, or None if nothing was credited to it yet."""
        slot = self._slots.get(key)
        return None if slot is None else self._capacity[slot]

    def tracked_endpoints(self) -> list[str]:
        """The keys of the endpoints the index holds blocks for."""
        return list(self._slots)

    # -- writing ----------------------------------------------------------------------------------------------

    def credit(self, key: str, hashes: Sequence[int], capacity: int | None = None) -> None:
        """Record that an endpoint caches these blocks (most recent last); evicts its least recently used ones."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._allocate(key, capacity if capacity and capacity > 0 else self.lru_capacity)
        lru = self._lrus[slot]
        assert lru is not None
        limit = self._capacity[slot]
        bit = 1 << slot
        owners = self._owners
        for block_hash in hashes:
            if block_hash in lru:
                lru.move_to_end(block_hash)
                continue
            lru[block_hash] = None
            owners[block_hash] = owners.get(block_hash, 0) | bit
            if len(lru) > limit:
                evicted, _ = lru.popitem(last=False)
                self._drop_owner(evicted, bit)

    def endpoint_removed(self, key: str) -> None:
        """Forget every block credited to an endpoint that left the pool."""
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        lru = self._lrus[slot]
        bit = 1 << slot
        for block_hash in lru or ():
            self._drop_owner(block_hash, bit)
        self._lrus[slot] = None
        self._slot_keys[slot] = ""
        self._free.append(slot)

    def after_pick(self, cycle: CycleState, decision: Decision) -> None:
        """Credit all of the request's blocks to the primary endpoint and to the prefill endpoint, if any (when this
        cycle hashed the request)."""
        match: PrefixMatch | None = cycle.step.get(id(self))  # None: no plugin of this cycle read the index
        if match is None or not match.hashes or decision.primary is None:
            return
        for key in (decision.primary, decision.prefill) if decision.prefill else (decision.primary,):
            endpoint = cycle.pool.get(key)
            capacity = endpoint.metrics.num_gpu_blocks if (self.auto_tune and endpoint is not None) else 0
            self.credit(key, match.hashes, capacity or self.lru_capacity)

    def _allocate(self, key: str, capacity: int) -> int:
        if self._free:
            slot = self._free.pop()
            self._slot_keys[slot] = key
            self._lrus[slot] = OrderedDict()
            self._capacity[slot] = capacity
        else:
            slot = len(self._slot_keys)
            self._slot_keys.append(key)
            self._lrus.append(OrderedDict())
            self._capacity.append(capacity)
        self._slots[key] = slot
        return slot

    def _drop_owner(self, block_hash: int, bit: int) -> None:
        mask = self._owners.get(block_hash, 0) & ~bit
        if mask:
            self._owners[block_hash] = mask
        else:
            self._owners.pop(block_hash, None)
