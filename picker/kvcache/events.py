"""Decoding of KV-cache event messages as vLLM publishes them over ZMQ (FACTS §10).

A message has 3 frames: topic (UTF-8, e.g. `kv@<pod>@<model>`), sequence number (8 bytes, big-endian, from 0 per
publisher) and a msgpack payload `[timestamp, [event, ...], data_parallel_rank]`. vLLM 0.32 writes each event as a map
whose `type` names it, leaving out fields at their default. The array form (`[tag, field, ...]` in declaration order,
as msgspec's `array_like` writes it) is accepted too: SGLang publishes that form with the fields `block_hashes,
parent_block_hash, token_ids, block_size, lora_id` (no `lora_name`, `extra_keys` or `medium`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

BlockHash = int | bytes  # uint64 by default; bytes with vLLM's full-width hash algorithms


class EventFormatError(ValueError):
    """A message that is not a KV-event batch; the message names the part at fault."""


@dataclass(frozen=True, slots=True)
class BlockStored:
    """Blocks newly cached by the engine; `token_ids` holds `block_size` tokens per block, concatenated."""

    block_hashes: list[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: list[int]
    block_size: int
    lora_name: str | None = None
    extra_keys: list[Any] | None = None  # per block: None or a list of extra hash keys (LoRA name, cache salt)
    medium: str | None = None
    group_idx: int = 0


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    """Blocks evicted by the engine."""

    block_hashes: list[BlockHash]
    medium: str | None = None
    group_idx: int = 0


@dataclass(frozen=True, slots=True)
class AllBlocksCleared:
    """The engine dropped its whole prefix cache."""


Event = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One decoded message."""

    topic: str
    seq: int
    timestamp: float
    events: list[Event]
    dp_rank: int = 0


_ARRAY_FIELDS = {
    "BlockStored": ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium", "lora_name"),
    "BlockRemoved": ("block_hashes", "medium"),
    "AllBlocksCleared": (),
}


def _fields(raw: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(raw, dict):
        kind = raw.get("type")
        fields = raw
    elif isinstance(raw, (list, tuple)) and raw and isinstance(raw[0], str):
        kind = raw[0]
        fields = dict(zip(_ARRAY_FIELDS.get(kind, ()), raw[1:], strict=False))
    else:
        raise EventFormatError(f"event {raw!r:.80} is neither a map with `type` nor a tagged array")
    if kind not in _ARRAY_FIELDS:
        raise EventFormatError(f"event type {kind!r} is unknown (expected one of {', '.join(_ARRAY_FIELDS)})")
    return kind, fields


def _hashes(fields: dict[str, Any], kind: str) -> list[BlockHash]:
    hashes = fields.get("block_hashes")
    if not isinstance(hashes, list) or not all(isinstance(h, (int, bytes)) for h in hashes):
        raise EventFormatError(f"{kind}.block_hashes must be a list of integers or byte strings")
    return hashes


def decode_event(raw: Any) -> Event:
    """One event from its msgpack-decoded form (map or tagged array)."""
    kind, fields = _fields(raw)
    if kind == "AllBlocksCleared":
        return AllBlocksCleared()
    hashes = _hashes(fields, kind)
    medium = fields.get("medium")
    group_idx = fields.get("group_idx") or 0
    if kind == "BlockRemoved":
        return BlockRemoved(hashes, medium, group_idx)
    tokens = fields.get("token_ids")
    block_size = fields.get("block_size")
    if not isinstance(tokens, list) or not isinstance(block_size, int) or block_size <= 0:
        raise EventFormatError("BlockStored needs token_ids (a list) and a positive block_size")
    if len(tokens) != block_size * len(hashes):
        raise EventFormatError(
            f"BlockStored.token_ids has {len(tokens)} tokens for {len(hashes)} blocks of {block_size}"
        )
    extra_keys = fields.get("extra_keys")
    if extra_keys is not None and (not isinstance(extra_keys, list) or len(extra_keys) != len(hashes)):
        raise EventFormatError("BlockStored.extra_keys must hold one entry per block")
    return BlockStored(
        hashes,
        fields.get("parent_block_hash"),
        tokens,
        block_size,
        fields.get("lora_name"),
        extra_keys,
        medium,
        group_idx,
    )


def decode_message(frames: Sequence[bytes]) -> EventBatch:
    """Decode one ZMQ message (topic, sequence, payload) into an EventBatch."""
    if len(frames) != 3:
        raise EventFormatError(f"a KV-event message has 3 frames (topic, sequence, payload), not {len(frames)}")
    topic, seq_frame, payload = frames
    if len(seq_frame) != 8:
        raise EventFormatError(f"the sequence frame has {len(seq_frame)} bytes, not 8")
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise EventFormatError(f"the payload is not msgpack: {error}") from None
    if not isinstance(body, (list, tuple)) or len(body) < 2 or not isinstance(body[1], list):
        raise EventFormatError("the payload must be [timestamp, [events...], data_parallel_rank]")
    dp_rank = body[2] if len(body) > 2 and isinstance(body[2], int) else 0
    return EventBatch(
        topic.decode("utf-8", "replace"),
        int.from_bytes(seq_frame, "big", signed=True),
        float(body[0]),
        [decode_event(raw) for raw in body[1]],
        dp_rank,
    )


def encode_message(batch: EventBatch) -> list[bytes]:
    """The 3 frames vLLM would send for `batch` (map form); used by tests and the simulator's publisher."""
    events = []
    for event in batch.events:
        if isinstance(event, AllBlocksCleared):
            events.append({"type": "AllBlocksCleared"})
            continue
        fields: dict[str, Any] = {"type": type(event).__name__}
        for name in event.__slots__:  # type: ignore[union-attr]
            value = getattr(event, name)
            if value is not None and not (name == "group_idx" and value == 0):
                fields[name] = value
        events.append(fields)
    payload = msgpack.packb([batch.timestamp, events, batch.dp_rank])
    return [batch.topic.encode(), batch.seq.to_bytes(8, "big", signed=True), payload]
