"""vLLM's KV-cache event stream, in vLLM's wire format: ZMQ PUB messages of msgpack event batches.

Each message has three frames: the topic (UTF-8), a sequence number (8 bytes, big-endian, from 0 per publisher) and
the payload, a msgpack array `[timestamp, [event, ...], data_parallel_rank]`. An event is a msgpack map whose first
key is `type`: `BlockStored` (one or more consecutive full blocks of a prompt: their chained hashes as uint64, the
hash of the block before them or nil, their token ids concatenated, the block size, the LoRA adapter's id and name,
and vLLM's `medium`, `extra_keys`, `group_idx` and `kv_cache_spec_kind`), `BlockRemoved` (evicted hashes) and
`AllBlocksCleared`. As with vLLM, an endpoint with `*` in it is bound (subscribers connect), any other is connected to
(the subscriber binds), and events published before a subscriber is there are lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgpack
import zmq

MEDIUM = "GPU"
KV_CACHE_SPEC_KIND = "full_attention"
Event = dict[str, Any]


def block_stored(
    block_hashes: Sequence[int],
    parent_block_hash: int | None,
    token_ids: Sequence[int],
    block_size: int,
    lora_id: int | None = None,
    lora_name: str | None = None,
) -> Event:
    """A `BlockStored` event for consecutive full blocks (`token_ids` = len(block_hashes) * block_size ids)."""
    if len(token_ids) != len(block_hashes) * block_size:
        raise ValueError(
            f"{len(block_hashes)} blocks of {block_size} tokens need as many token ids, not {len(token_ids)}"
        )
    extra_key = [lora_name] if lora_name is not None else None
    return {
        "type": "BlockStored",
        "block_hashes": list(block_hashes),
        "parent_block_hash": parent_block_hash,
        "token_ids": list(token_ids),
        "block_size": block_size,
        "lora_id": lora_id,
        "medium": MEDIUM,
        "lora_name": lora_name,
        "extra_keys": [extra_key] * len(block_hashes),
        "group_idx": 0,
        "kv_cache_spec_kind": KV_CACHE_SPEC_KIND,
    }


def block_removed(block_hashes: Sequence[int]) -> Event:
    """A `BlockRemoved` event for evicted blocks."""
    return {"type": "BlockRemoved", "block_hashes": list(block_hashes), "medium": MEDIUM, "group_idx": 0}


def all_blocks_cleared() -> Event:
    """An `AllBlocksCleared` event (the cache was reset)."""
    return {"type": "AllBlocksCleared"}


def encode_batch(events: Sequence[Event], timestamp: float, data_parallel_rank: int = 0) -> bytes:
    """The msgpack payload of one message."""
    return msgpack.packb([float(timestamp), list(events), data_parallel_rank])


def decode_batch(payload: bytes) -> tuple[float, list[Event], int]:
    """The timestamp, events and data-parallel rank of one message's payload (vLLM's or the simulator's)."""
    timestamp, events, rank = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return timestamp, events, rank


class KVEventSink(Protocol):
    """Where an engine's KV-event batches go: a ZMQ publisher, or a consumer in the same process."""

    def publish(self, events: Sequence[Event], timestamp: float | None = None) -> None:
        """Deliver one batch (nothing when `events` is empty)."""

    def close(self) -> None:
        """Release what the sink holds."""


class KVEventPublisher:
    """Publishes event batches on a ZMQ PUB socket under one topic, numbering messages from 0."""

    def __init__(self, endpoint: str, topic: str, interface: str | None = None) -> None:
        """`interface`: the address a `*` endpoint binds (None: every interface)."""
        self.endpoint = endpoint
        self.topic = topic.encode()
        self.sequence = 0
        self._socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if "*" in endpoint:
            self._socket.bind(endpoint.replace("*", interface) if interface else endpoint)
        else:
            self._socket.connect(endpoint)

    def publish(self, events: Sequence[Event], timestamp: float | None = None) -> None:
        """Send one message holding `events` (nothing when there are none)."""
        if not events:
            return
        payload = encode_batch(events, time.time() if timestamp is None else timestamp)
        self._socket.send_multipart([self.topic, self.sequence.to_bytes(8, "big"), payload], flags=zmq.NOBLOCK)
        self.sequence += 1

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()
