"""Which blocks each endpoint caches, from its KV events, and whether that knowledge can be trusted.

Keys: poolgate computes its own block keys from the events' token IDs, so it never needs the engine's hash
algorithm; engine hashes are only kept to map BlockRemoved back to keys. A block's key is xxh64 of its parent's key
(8 bytes, little-endian) followed by its tokens (4 bytes each); a block without a parent chains from a seed that is
xxh64 of its extra keys (LoRA adapter name, then cache salt, as vLLM puts them on a prompt's first block). A request's
keys are computed the same way from its tokens (`request_keys`), in blocks of the endpoint's engine block size (taken
from its events); only full blocks count, as in the engine. Multimodal extra keys are not modelled (text prompts).

Only blocks of KV-cache group 0 in the engine's own memory (`medium` absent or "GPU") are indexed; offloaded tiers
and other groups are ignored.

Reliability: an endpoint's index is trusted from the first message with sequence 0 (the publisher's start) or after
AllBlocksCleared, and as long as sequence numbers follow each other. A gap (missed messages: a slow subscriber whose
queue overflowed, a network drop) or a first message with sequence > 0 (history missed) makes it unreliable, with the
reason kept; a sequence back to 0 (engine restart) clears the endpoint and trusts it again. An unreliable endpoint's
index is rebuilt by replay when the subscriber can (`replay`), otherwise it stays unreliable until the engine clears
or restarts; meanwhile scorers use the approximate index for it.

Speculation (`speculate`): a pick's blocks are assumed on the chosen endpoint until the TTL passes or the endpoint's
events store them, whichever comes first; so a block the engine stored and then evicted stops matching as soon as
its BlockRemoved arrives, even within the TTL.

Memory: one shared dict maps each key to a bitmask of the endpoints holding it; per endpoint one dict maps engine
hash -> key (about 190 bytes per cached block, measured in tests/test_kvcache_index.py).
"""

from __future__ import annotations

import heapq
import struct
import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import xxhash

from picker.kvcache.events import AllBlocksCleared, BlockHash, BlockRemoved, BlockStored, EventBatch

_hash = xxhash.xxh64_intdigest
_pack_key = struct.Struct("<Q").pack
_INDEXED_MEDIA = (None, "GPU")


def chain_seed(extra_keys: Iterable[object] | None) -> int:
    """The key a parentless block chains from, given its extra keys (None/empty: no LoRA, no salt)."""
    parts = [str(key).encode("utf-8") for key in extra_keys or ()]
    return _hash(b"\x00".join(parts))


def block_key(parent_key: int, tokens: Sequence[int]) -> int:
    """The key of one block of tokens following the block whose key is `parent_key`."""
    return _hash(_pack_key(parent_key) + array("I", tokens).tobytes())


def request_keys(
    tokens: Sequence[int], block_size: int, lora_name: str | None = None, cache_salt: str = ""
) -> list[int]:
    """The keys of a request's full blocks, as they would be keyed from the events the engine emits caching them."""
    extras = [key for key in (lora_name, cache_salt) if key]
    previous = chain_seed(extras)
    keys = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        previous = block_key(previous, tokens[start : start + block_size])
        keys.append(previous)
    return keys


@dataclass(slots=True)
class EndpointBlocks:
    """What one endpoint caches and how far its event stream is known."""

    slot: int
    blocks: dict[BlockHash, int] = field(default_factory=dict)  # engine hash -> key
    block_size: int = 0  # engine block size, from its events (0: none seen yet)
    next_seq: int | None = None  # the sequence number expected next (None: no message seen)
    unreliable: str = "no events received yet"  # why the index cannot be trusted ("" when it can)
    resyncs: int = 0  # how many times the index was found unreliable after having been trusted


class BlockIndex:
    """The precise per-endpoint block index of one pool (thread-safe: events arrive on the subscriber's thread)."""

    def __init__(self, speculative_ttl: float = 2.0) -> None:
        self.speculative_ttl = speculative_ttl
        self._lock = threading.Lock()
        self._owners: dict[int, int] = {}  # key -> bitmask of endpoint slots holding it
        self._endpoints: dict[str, EndpointBlocks] = {}
        self._slot_keys: list[str] = []
        self._free: list[int] = []
        self._speculative: dict[int, int] = {}  # key -> bitmask of slots it is assumed to be on
        self._speculative_expiry: list[tuple[float, int, int, list[int]]] = []  # heap of (expiry, seq, bit, keys)
        self._speculations = 0
        self._speculated_until: dict[tuple[int, int], float] = {}  # (key, bit) -> expiry of its latest speculation

    # -- endpoints ------------------------------------------------------------------------------------------------

    def endpoint(self, key: str) -> EndpointBlocks:
        """The state of an endpoint, created (unreliable, empty) on first use."""
        state = self._endpoints.get(key)
        if state is None:
            with self._lock:
                state = self._endpoints.get(key)
                if state is None:
                    slot = self._free.pop() if self._free else len(self._slot_keys)
                    if slot == len(self._slot_keys):
                        self._slot_keys.append(key)
                    else:
                        self._slot_keys[slot] = key
                    state = self._endpoints[key] = EndpointBlocks(slot)
        return state

    def reliable(self, key: str) -> bool:
        """Whether the endpoint's index is trusted (see the module docstring)."""
        state = self._endpoints.get(key)
        return state is not None and not state.unreliable

    def any_reliable(self) -> bool:
        """Whether some endpoint's index is trusted."""
        return any(not state.unreliable for state in list(self._endpoints.values()))

    def block_size(self, key: str) -> int:
        """The endpoint's engine block size as its events report it (0 when unknown)."""
        state = self._endpoints.get(key)
        return state.block_size if state is not None else 0

    def block_count(self, key: str) -> int:
        """How many blocks the endpoint caches according to its events."""
        state = self._endpoints.get(key)
        return len(state.blocks) if state is not None else 0

    def remove_endpoint(self, key: str) -> None:
        """Forget an endpoint that left the pool."""
        with self._lock:
            state = self._endpoints.pop(key, None)
            if state is None:
                return
            self._clear(state)
            self._drop_speculative(1 << state.slot)
            self._slot_keys[state.slot] = ""
            self._free.append(state.slot)

    def mark_unreliable(self, key: str, reason: str) -> None:
        """Stop trusting an endpoint's index (its blocks are kept until a rebuild replaces them)."""
        state = self.endpoint(key)
        with self._lock:
            if not state.unreliable:
                state.resyncs += 1
            state.unreliable = reason

    # -- ingestion ------------------------------------------------------------------------------------------------

    def check_sequence(self, key: str, seq: int) -> str:
        """Classify the next message's sequence for an endpoint: "next", "restart", "gap" or "stale"."""
        state = self.endpoint(key)
        expected = state.next_seq
        if expected is None:
            return "restart" if seq == 0 else "gap"
        if seq == expected:
            return "next"
        if seq == 0:
            return "restart"
        return "gap" if seq > expected else "stale"

    def ingest(self, key: str, batch: EventBatch) -> str:
        """Apply one message of an endpoint's stream, checking its sequence; returns check_sequence's verdict
        ("stale" messages are dropped; on "gap" the events are applied but the endpoint is marked unreliable)."""
        verdict = self.check_sequence(key, batch.seq)
        state = self.endpoint(key)
        if verdict == "stale":
            return verdict
        with self._lock:
            if verdict == "restart":
                self._clear(state)
                state.unreliable = ""
            elif verdict == "gap":
                if not state.unreliable:
                    state.resyncs += 1
                expected = "the stream's start" if state.next_seq is None else f"sequence {state.next_seq}"
                state.unreliable = f"missed messages: expected {expected}, got {batch.seq}"
            state.next_seq = batch.seq + 1
            self._apply(state, batch.events)
        return verdict

    def replace(self, key: str, batches: Sequence[EventBatch]) -> None:
        """Rebuild an endpoint's index from a complete replay starting at sequence 0, and trust it again."""
        state = self.endpoint(key)
        with self._lock:
            self._clear(state)
            for batch in batches:
                self._apply(state, batch.events)
            state.next_seq = batches[-1].seq + 1 if batches else 0
            state.unreliable = ""

    def apply_replayed(self, key: str, batches: Sequence[EventBatch]) -> None:
        """Fill a gap from replayed messages that start exactly at the expected sequence, and trust the index again."""
        state = self.endpoint(key)
        with self._lock:
            for batch in batches:
                self._apply(state, batch.events)
            if batches:
                state.next_seq = batches[-1].seq + 1
            state.unreliable = ""

    def _apply(self, state: EndpointBlocks, events: Iterable[object]) -> None:
        bit = 1 << state.slot
        owners, speculative = self._owners, self._speculative
        blocks = state.blocks
        for event in events:
            if isinstance(event, BlockStored):
                if event.medium not in _INDEXED_MEDIA or event.group_idx:
                    continue
                size = event.block_size
                state.block_size = size
                parent = event.parent_block_hash
                if parent is None:
                    first_extras = event.extra_keys[0] if event.extra_keys else None
                    previous = chain_seed(first_extras or ([event.lora_name] if event.lora_name else None))
                else:
                    previous = blocks.get(parent)  # type: ignore[assignment]
                    if previous is None:  # parent unknown (evicted meanwhile, or missed): keys cannot be chained
                        continue
                tokens = event.token_ids
                for i, engine_hash in enumerate(event.block_hashes):
                    previous = block_key(previous, tokens[i * size : (i + 1) * size])
                    blocks[engine_hash] = previous
                    owners[previous] = owners.get(previous, 0) | bit
                    if speculative.get(previous, 0) & bit:  # confirmed: from now on its removal counts at once
                        self._drop_guess(previous, bit)
            elif isinstance(event, BlockRemoved):
                if event.medium not in _INDEXED_MEDIA or event.group_idx:
                    continue
                for engine_hash in event.block_hashes:
                    removed = blocks.pop(engine_hash, None)
                    if removed is not None:
                        self._drop_owner(removed, bit)
            elif isinstance(event, AllBlocksCleared):
                self._clear(state)
                state.unreliable = ""

    def _clear(self, state: EndpointBlocks) -> None:
        bit = 1 << state.slot
        for block in state.blocks.values():
            self._drop_owner(block, bit)
        state.blocks = {}

    def _drop_owner(self, key: int, bit: int) -> None:
        _clear_bit(self._owners, key, bit)

    # -- speculation ------------------------------------------------------------------------------------------------

    def speculate(self, endpoint: str, keys: list[int], now: float, ttl: float | None = None) -> None:
        """Assume `endpoint` caches `keys` until `now + ttl` (default `speculative_ttl`: the events confirming it are
        on their way) or until its events store them (once stored, a block's removal counts at once); the latest
        speculation of a block on an endpoint decides when it ends, earlier or later."""
        if self.speculative_ttl <= 0 or not keys:
            return
        bit = 1 << self.endpoint(endpoint).slot
        expiry = now + (self.speculative_ttl if ttl is None else ttl)
        with self._lock:
            self._expire(now)
            speculative, until = self._speculative, self._speculated_until
            for key in keys:
                speculative[key] = speculative.get(key, 0) | bit
                until[key, bit] = expiry
            self._speculations += 1
            heapq.heappush(self._speculative_expiry, (expiry, self._speculations, bit, keys))

    def _expire(self, now: float) -> None:
        queue, until = self._speculative_expiry, self._speculated_until
        while queue and queue[0][0] <= now:
            _, _, bit, keys = heapq.heappop(queue)
            for key in keys:
                if until.get((key, bit), now) > now:  # speculated again since, until later
                    continue
                until.pop((key, bit), None)
                self._drop_guess(key, bit)

    def _drop_guess(self, key: int, bit: int) -> None:
        _clear_bit(self._speculative, key, bit)

    def _drop_speculative(self, bit: int) -> None:
        for key in [key for key, mask in self._speculative.items() if mask & bit]:
            self._drop_guess(key, bit)
            self._speculated_until.pop((key, bit), None)

    # -- lookup -----------------------------------------------------------------------------------------------------

    def matched_blocks(
        self, keys: Sequence[int], endpoints: Iterable[str], now: float, speculative: bool = True
    ) -> dict[str, int]:
        """Per endpoint, how many of the leading `keys` it caches consecutively from the first (events, plus
        unexpired speculation unless `speculative` is False)."""
        wanted = 0
        slots: dict[int, str] = {}
        for key in endpoints:
            state = self._endpoints.get(key)
            if state is not None:
                wanted |= 1 << state.slot
                slots[state.slot] = key
        counts = dict.fromkeys(slots.values(), 0)
        with self._lock:
            self._expire(now)
            owners, guesses = self._owners, (self._speculative if speculative else {})
            alive = wanted
            for position, block in enumerate(keys):
                still = alive & (owners.get(block, 0) | guesses.get(block, 0))
                dropped = alive & ~still
                while dropped:
                    low = dropped & -dropped
                    counts[slots[low.bit_length() - 1]] = position
                    dropped ^= low
                alive = still
                if not alive:
                    break
            else:
                while alive:
                    low = alive & -alive
                    counts[slots[low.bit_length() - 1]] = len(keys)
                    alive ^= low
        return counts


def _clear_bit(masks: dict[int, int], key: int, bit: int) -> None:
    """Clear `bit` in `masks[key]`, dropping the key when no bit is left."""
    mask = masks.get(key, 0) & ~bit
    if mask:
        masks[key] = mask
    else:
        masks.pop(key, None)
