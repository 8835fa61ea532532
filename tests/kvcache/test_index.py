"""The precise block index: keys from events, removals, reliability, speculation, memory."""

from __future__ import annotations

from picker.kvcache.bench import measure_index_memory
from picker.kvcache.events import AllBlocksCleared, BlockRemoved, BlockStored, EventBatch, decode_message
from picker.kvcache.index import BlockIndex, request_keys
from tests.kvcache.reference import reference_messages

BLOCK = 4


def batch(seq: int, *events: object) -> EventBatch:
    return EventBatch("kv@pod@m", seq, 0.0, list(events))  # type: ignore[arg-type]


def stored(hashes: list[int], tokens: list[int], parent: int | None = None, **fields: object) -> BlockStored:
    return BlockStored(hashes, parent, tokens, BLOCK, **fields)  # type: ignore[arg-type]


def test_reference_events_make_the_engine_prefix_match_the_request_tokens():
    index = BlockIndex()
    lora_messages = [decode_message(frames) for frames in reference_messages()][1:5]  # one stream, seq 0..3
    assert [m.seq for m in lora_messages] == [0, 1, 2, 3]
    for message in lora_messages:
        assert index.ingest("a", message) == ("next" if message.seq else "restart")
    first = lora_messages[0].events[0]
    child = lora_messages[2].events[0]
    assert isinstance(first, BlockStored) and isinstance(child, BlockStored)
    assert child.parent_block_hash == first.block_hashes[0]
    tokens = first.token_ids + child.token_ids + [7] * 50  # two full cached blocks, then an uncached partial one
    keys = request_keys(tokens, 128, lora_name="lora1")
    assert index.matched_blocks(keys, ["a"], now=0.0) == {"a": 2}
    assert index.matched_blocks(request_keys(tokens, 128), ["a"], now=0.0) == {"a": 0}  # no LoRA: other keys
    assert index.reliable("a") and index.block_size("a") == 128 and index.block_count("a") == 6


def test_matches_count_leading_blocks_only_and_removals_map_engine_hashes_back():
    index = BlockIndex()
    tokens = list(range(16))
    index.ingest("a", batch(0, stored([11, 12], tokens[:8]), stored([13, 14], tokens[8:], parent=12)))
    index.ingest("b", batch(0, stored([21], tokens[:4]), stored([23], tokens[8:12], parent=999)))  # parent unknown
    keys = request_keys(tokens, BLOCK)
    assert index.matched_blocks(keys, ["a", "b"], now=0.0) == {"a": 4, "b": 1}
    index.ingest("a", batch(1, BlockRemoved([12])))
    assert index.matched_blocks(keys, ["a", "b"], now=0.0) == {"a": 1, "b": 1}  # a hole stops the prefix
    index.ingest("a", batch(2, AllBlocksCleared()))
    assert index.matched_blocks(keys, ["a"], now=0.0) == {"a": 0} and index.block_count("a") == 0


def test_cache_salt_and_offloaded_blocks_are_keyed_apart():
    index = BlockIndex()
    tokens = list(range(8))
    index.ingest("a", batch(0, stored([1, 2], tokens, extra_keys=[["salt-1"], None])))
    index.ingest("b", batch(0, stored([1, 2], tokens, medium="CPU")))
    assert index.matched_blocks(request_keys(tokens, BLOCK, cache_salt="salt-1"), ["a", "b"], 0.0) == {"a": 2, "b": 0}
    assert index.matched_blocks(request_keys(tokens, BLOCK), ["a", "b"], 0.0) == {"a": 0, "b": 0}


def test_gaps_late_joins_and_restarts_set_reliability():
    index = BlockIndex()
    tokens = list(range(8))
    assert index.ingest("late", batch(5, stored([1], tokens[:4]))) == "gap"
    assert not index.reliable("late") and "expected the stream's start, got 5" in index.endpoint("late").unreliable
    assert index.ingest("a", batch(0, stored([1], tokens[:4]))) == "restart" and index.reliable("a")
    assert index.ingest("a", batch(1, stored([2], tokens[4:], parent=1))) == "next" and index.reliable("a")
    assert index.ingest("a", batch(3, BlockRemoved([2]))) == "gap"
    assert index.endpoint("a").unreliable == "missed messages: expected sequence 2, got 3"
    assert index.endpoint("a").resyncs == 1
    assert index.ingest("a", batch(3, BlockRemoved([1]))) == "stale"  # a duplicate is dropped
    assert index.block_count("a") == 1
    assert index.ingest("a", batch(0, stored([7], tokens[:4]))) == "restart"  # the engine restarted: empty cache
    assert index.reliable("a") and index.block_count("a") == 1


def test_speculative_entries_expire_after_their_ttl():
    index = BlockIndex(speculative_ttl=2.0)
    index.endpoint("a")
    keys = request_keys(list(range(12)), BLOCK)
    index.speculate("a", keys, now=10.0)
    assert index.matched_blocks(keys, ["a"], now=11.9) == {"a": 3}
    assert index.matched_blocks(keys, ["a"], now=12.0) == {"a": 0}


def test_a_stored_block_ends_its_speculation_so_that_its_eviction_counts_within_the_ttl():
    index = BlockIndex(speculative_ttl=30.0)
    tokens = list(range(8))
    keys = request_keys(tokens, BLOCK)
    index.ingest("a", batch(0))
    index.speculate("a", keys, now=0.0)
    index.speculate("b", keys, now=0.0)
    index.ingest("a", batch(1, stored([1, 2], tokens)))
    assert index.matched_blocks(keys, ["a", "b"], now=1.0) == {"a": 2, "b": 2}
    index.ingest("a", batch(2, BlockRemoved([2])))  # evicted 2 s after the pick, well within the TTL
    assert index.matched_blocks(keys, ["a", "b"], now=2.0) == {"a": 1, "b": 2}  # b: still only guessed
    assert index.matched_blocks(keys, ["a", "b"], now=31.0) == {"a": 1, "b": 0}


def test_the_latest_speculation_of_a_block_decides_when_it_ends():
    index = BlockIndex(speculative_ttl=2.0)
    index.endpoint("a")
    index.endpoint("b")
    keys = request_keys(list(range(12)), BLOCK)
    index.speculate("a", keys, now=10.0)
    index.speculate("a", keys, now=11.0)  # a second pick of the same prompt: its own 2 s
    index.speculate("b", keys[:2], now=10.0, ttl=60.0)  # held (a request waiting for its first token)
    assert index.matched_blocks(keys, ["a", "b"], now=12.5) == {"a": 3, "b": 2}  # the first expiry ends neither
    assert index.matched_blocks(keys, ["a", "b"], now=13.0) == {"a": 0, "b": 2}
    index.speculate("b", keys[:2], now=14.0, ttl=0.0)  # ended: shorter than the hold it replaces
    assert index.matched_blocks(keys, ["a", "b"], now=14.0) == {"a": 0, "b": 0}


def test_removed_endpoints_free_their_slot_and_blocks():
    index = BlockIndex()
    tokens = list(range(4))
    index.ingest("a", batch(0, stored([1], tokens)))
    index.remove_endpoint("a")
    index.ingest("b", batch(0, stored([5], [9, 9, 9, 9])))
    assert index.endpoint("b").slot == 0  # a's slot reused
    assert index.matched_blocks(request_keys(tokens, BLOCK), ["b"], 0.0) == {"b": 0}


def test_an_endpoint_with_31250_blocks_takes_under_10_mb():
    row = measure_index_memory(31250)
    assert row["blocks"] == 31250
    assert row["mb_per_endpoint"] <= 10.0
