"""The simulator's building blocks: virtual clock, tokens and prompts, KV-cache blocks, LoRA slots, config."""

from __future__ import annotations

import pytest

from simulator import Prompt, ServerConfig, VirtualClock
from simulator.kvcache import KVCache
from simulator.lora import AdapterSlots
from simulator.tokens import render_chat, synthetic_text


def test_virtual_clock_runs_callbacks_in_time_then_scheduling_order():
    clock, seen = VirtualClock(), []
    clock.call_at(2.0, seen.append, "c")
    clock.call_at(1.0, seen.append, "a")
    clock.call_at(1.0, seen.append, "b")
    dropped = clock.call_at(1.5, seen.append, "dropped")
    dropped.cancel()
    clock.run_until(1.5)
    assert seen == ["a", "b"] and clock.now() == 1.5
    assert clock.pending() == 1
    clock.call_later(0.25, lambda: seen.append(clock.now()))
    clock.run_until_idle()
    assert seen == ["a", "b", 1.75, "c"] and clock.now() == 2.0


def test_virtual_clock_never_goes_back():
    clock = VirtualClock(start=5.0, epoch=100.0)
    times = []
    clock.call_at(1.0, lambda: times.append(clock.now()))
    clock.run_until_idle()
    assert times == [5.0] and clock.timestamp() == 105.0


def test_text_prompts_count_four_bytes_per_token_and_hash_64_byte_blocks():
    assert Prompt.from_text("abcd").num_tokens == 1
    assert Prompt.from_text("abcde").num_tokens == 2
    assert Prompt.from_text("é" * 6).num_tokens == 3  # 12 bytes of UTF-8
    base = "x" * 64 * 3 + "tail"
    other = "x" * 64 * 2 + "y" * 64 + "tail"
    hashes = Prompt.from_text(base).block_hashes(16, "m")
    assert len(hashes) == 3
    other_hashes = Prompt.from_text(other).block_hashes(16, "m")
    assert other_hashes[:2] == hashes[:2] and other_hashes[2] != hashes[2]
    assert Prompt.from_text(base).block_hashes(16, "adapter")[0] != hashes[0]  # namespaces do not share blocks


def test_block_hashes_are_chained():
    # Same second block content after a different first block: a different hash.
    first = Prompt.from_text("a" * 64 + "b" * 64).block_hashes(16, "m")
    second = Prompt.from_text("c" * 64 + "b" * 64).block_hashes(16, "m")
    assert first[1] != second[1]


def test_segment_prompts_share_exactly_their_common_leading_segments():
    one = Prompt.from_segments([("system", 100), ("user-1", 60)])
    two = Prompt.from_segments([("system", 100), ("user-2", 60)])
    assert one.num_tokens == 160
    hashes_one, hashes_two = one.block_hashes(16, "m"), two.block_hashes(16, "m")
    assert len(hashes_one) == 10
    assert hashes_one[:6] == hashes_two[:6]  # blocks 0-5 lie inside the 100-token system segment
    assert hashes_one[6] != hashes_two[6]  # block 6 spans tokens 96-111: it mixes in the user segment
    with pytest.raises(ValueError):
        Prompt.from_segments([("empty", 0)])


def test_token_id_prompts():
    prompt = Prompt.from_token_ids(list(range(40)))
    assert prompt.num_tokens == 40 and len(prompt.block_hashes(16, "m")) == 2
    assert Prompt.from_token_ids(list(range(32))).block_hashes(16, "m") == prompt.block_hashes(16, "m")


def test_chat_rendering_keeps_a_growing_conversation_as_a_prefix():
    turn1 = [("system", "be brief"), ("user", "hello")]
    turn2 = turn1 + [("assistant", "hi"), ("user", "how are you?")]
    first, second = render_chat(turn1), render_chat(turn2)
    assert second.startswith(first.removesuffix("<|assistant|>\n"))
    assert first.endswith("<|assistant|>\n") and "hello" in first


def test_synthetic_text_has_one_word_per_token():
    assert len(synthetic_text(0, 25).split()) == 25
    assert synthetic_text(0, 3) + synthetic_text(3, 2) == synthetic_text(0, 5)


def test_kv_cache_shares_cached_blocks_and_refuses_what_does_not_fit():
    kv = KVCache(10)
    assert kv.allocate((1, 2, 3), 4)
    assert kv.used_blocks() == 4 and kv.cached_blocks() == 3
    assert kv.allocate((1, 2, 9), 5)  # shares 1 and 2, allocates 3 new blocks
    assert kv.used_blocks() == 7
    assert not kv.allocate((7,), 4)  # only 3 blocks left
    assert kv.used_blocks() == 7
    kv.release((1, 2, 3), 4)
    kv.release((1, 2, 9), 5)
    assert kv.used_blocks() == 0 and kv.cached_blocks() == 4 and kv.usage() == 0.0
    assert kv.cached_prefix((1, 2, 3, 4)) == 3


def test_kv_cache_evicts_unreferenced_blocks_least_recent_first_and_tail_first():
    kv = KVCache(6)
    kv.allocate((1, 2, 3), 3)
    kv.release((1, 2, 3), 3)
    kv.allocate((4, 5), 2)
    kv.release((4, 5), 2)
    # 1 empty block + 5 evictable: ask for 3 blocks -> the empty one, then 3 (tail of the older prompt), then 2.
    assert kv.allocate((6, 7, 8), 3)
    assert kv.cached_prefix((1, 2, 3)) == 1
    assert kv.cached_prefix((4, 5)) == 2


def test_kv_cache_revives_cached_blocks_it_shares():
    kv = KVCache(4)
    kv.allocate((1, 2), 2)
    kv.release((1, 2), 2)
    assert kv.allocate((1, 2), 4)  # the two cached blocks are reused, two empty ones added
    assert kv.used_blocks() == 4
    assert not kv.allocate((3,), 1)


def test_adapter_slots():
    slots = AdapterSlots(2)
    assert slots.can_run("a", {}) and slots.activate("a", {})
    assert not slots.activate("a", {"a": 1})  # already resident
    assert slots.activate("b", {"a": 1})
    assert not slots.can_run("c", {"a": 1, "b": 1}) and slots.can_run("a", {"a": 1, "b": 1})
    assert slots.activate("c", {"b": 1})  # evicts "a", the least recently used adapter not running
    assert slots.resident() == ["b", "c"]
    slots.drop("b")
    assert slots.resident() == ["c"]


def test_config_validation_and_decode_step_curve():
    config = ServerConfig()
    assert config.decode_step_time(1) == pytest.approx(0.012)
    assert config.decode_step_time(16) == pytest.approx(0.024)
    assert config.without_latency().decode_step_time(16) == 0
    with pytest.raises(ValueError, match="engine"):
        ServerConfig(engine="tgi")
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        ServerConfig(max_num_seqs=64, max_num_batched_tokens=32)
    with pytest.raises(ValueError, match="full_batch_slowdown"):
        ServerConfig(full_batch_slowdown=0.5)
