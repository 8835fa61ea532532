"""Decoding vLLM's KV-event messages (and SGLang's array form)."""

from __future__ import annotations

import msgpack
import pytest

from picker.kvcache.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
    EventFormatError,
    decode_message,
    encode_message,
)
from tests.kvcache.reference import reference_messages


def test_every_reference_message_decodes_with_its_sequence_and_fields():
    decoded = [decode_message(frames) for frames in reference_messages()]
    assert [m.seq for m in decoded] == [2, 0, 1, 2, 3, 4, 5]
    assert all(m.topic == "kv@127.0.0.1@tiny" and m.dp_rank == 0 for m in decoded)
    first = decoded[0].events[0]
    assert isinstance(first, BlockStored) and len(first.block_hashes) == 3 and len(first.token_ids) == 384
    lora = decoded[1].events[0]
    assert isinstance(lora, BlockStored) and lora.lora_name == "lora1" and lora.extra_keys == [["lora1"]]
    assert decoded[3].events[0].parent_block_hash == lora.block_hashes[0]  # type: ignore[union-attr]


def test_encode_and_decode_round_trip_every_event_type():
    events = [
        BlockStored([1, 2], None, list(range(8)), 4, "ad", [["ad"], None], "GPU"),
        BlockRemoved([2], "GPU"),
        AllBlocksCleared(),
    ]
    original = EventBatch("kv@p@m", 7, 1.5, events, 1)  # type: ignore[arg-type]
    assert decode_message(encode_message(original)) == original


def test_sglang_array_form_is_accepted():
    payload = msgpack.packb([1.0, [["BlockStored", [5], None, [1, 2], 2, None], ["BlockRemoved", [5]]], 0])
    batch = decode_message([b"kv@x@m", (3).to_bytes(8, "big"), payload])
    assert batch.events == [BlockStored([5], None, [1, 2], 2), BlockRemoved([5])]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"t", b"12345678"], "3 frames"),
        ([b"t", b"1", b""], "sequence frame has 1 bytes"),
        ([b"t", bytes(8), b"\xc1"], "not msgpack"),
        ([b"t", bytes(8), msgpack.packb({"a": 1})], "must be [timestamp"),
        ([b"t", bytes(8), msgpack.packb([0.0, [{"type": "Nope"}], 0])], "'Nope' is unknown"),
        ([b"t", bytes(8), msgpack.packb([0.0, [{"type": "BlockStored", "block_hashes": [1]}], 0])], "token_ids"),
        (
            [
                b"t",
                bytes(8),
                msgpack.packb(
                    [0, [{"type": "BlockStored", "block_hashes": [1], "token_ids": [1], "block_size": 2}], 0]
                ),
            ],
            "1 tokens for 1 blocks of 2",
        ),
    ],
)
def test_malformed_messages_are_errors_naming_the_part(frames, message):
    with pytest.raises(EventFormatError, match=message.replace("[", r"\[")):
        decode_message(frames)
