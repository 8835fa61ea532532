"""Prompt bytes, chained block hashes and the per-endpoint LRU prefix index."""

import struct

import xxhash

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import PrefixIndex, PromptInput, SchedulingRequest, go_json, prefix_hashes


def reference_hashes(data: bytes, seed_text: str, block: int, max_blocks: int) -> list[int]:
    """The hashing rule written out independently: h0 = xxh64(model+salt); hi = xxh64(block_i || le64(h(i-1)))."""
    previous = xxhash.xxh64(seed_text.encode()).intdigest()
    out = []
    for i in range(min(max_blocks, -(-len(data) // block))):
        hasher = xxhash.xxh64()
        hasher.update(data[i * block : (i + 1) * block])
        hasher.update(struct.pack("<Q", previous))
        previous = hasher.intdigest()
        out.append(previous)
    return out


def test_hashes_of_a_known_string_including_the_trailing_partial_block():
    hashes = prefix_hashes(b"a" * 130, "m", "", 64, 256)
    assert hashes == [0x48F3BB46E2D80A01, 0xF760C4557FB31A91, 0x0B0E5CD74746DF0A]
    assert hashes == reference_hashes(b"a" * 130, "m", 64, 256)


def test_model_and_cache_salt_seed_the_chain_and_blocks_are_capped():
    data = bytes(range(256)) * 100  # 25,600 bytes = 400 blocks of 64
    capped = prefix_hashes(data, "llama", "salt", 64, 256)
    assert len(capped) == 256
    assert capped == reference_hashes(data, "llamasalt", 64, 256)
    assert prefix_hashes(data, "qwen", "salt", 64, 256)[0] != capped[0]
    assert prefix_hashes(b"", "m", "", 64, 256) == []
    assert len(prefix_hashes(b"x", "m", "", 64, 256)) == 1


def test_chat_prompt_bytes_are_the_go_json_of_messages():
    body = {
        "model": "m",
        "cache_salt": "s1",
        "messages": [
            {"role": "system", "content": "Be brief & <kind>."},
            {
                "role": "user",
                "name": "bob",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "http://x/y.png", "detail": "auto"}},
                ],
            },
            {"content": "no role\n\u2028"},
        ],
    }
    prompt = PromptInput.from_body(body)
    assert prompt.data.decode() == (
        '[{"role":"system","content":"Be brief \\u0026 \\u003ckind\\u003e."},'
        '{"role":"user","content":[{"type":"text","text":"hi","image_url":{},"input_audio":{},"video_url":{}},'
        '{"type":"image_url","image_url":{"url":"http://x/y.png"},"input_audio":{},"video_url":{}}]},'
        '{"content":"no role\\n\\u2028"}]'
    )
    assert prompt.cache_salt == "s1"


def test_go_json_writes_lone_surrogates_as_replacement_characters():
    assert go_json({"b": "x\ud800y", "a": 1}) == '{"a":1,"b":"x\ufffdy"}'.encode()


def test_completion_responses_and_embeddings_prompt_bytes():
    assert PromptInput.from_body({"prompt": "héllo"}).data == "héllo".encode()
    assert PromptInput.from_body({"prompt": ["a", "b"]}).data == b'["a","b"]'
    assert (
        PromptInput.from_body({"input": "x", "instructions": "be <b>", "tools": [{"b": 1, "a": 2}]}).data
        == b'[{"instructions":"be \\u003cb\\u003e"},{"tools":[{"a":2,"b":1}]},{"input":"x"}]'
    )
    assert PromptInput.from_body({"input": ["q"]}, path="/v1/embeddings").data == b'["q"]'
    assert PromptInput.from_body({"model": "m"}).data == b""
    assert PromptInput(b"x" * 130).estimated_tokens == 32


def test_lru_eviction_and_recency():
    index = PrefixIndex(lru_capacity=3)
    index.credit("a", [1, 2, 3])
    index.credit("a", [4])  # evicts 1, the least recently used
    assert index.matches([1, 2, 3]) == {}
    assert index.matches([2, 3, 4]) == {"a": 3}
    index.credit("a", [2])  # 2 becomes the most recent
    index.credit("a", [5])  # evicts 3
    assert index.matches([2]) == {"a": 1}
    assert index.matches([3]) == {}
    assert index.block_count("a") == 3


def test_matches_count_each_endpoints_blocks_along_the_shared_run():
    index = PrefixIndex()
    index.credit("a", [10, 11, 12, 13])
    index.credit("b", [10, 11])
    index.credit("c", [99])
    assert index.matches([10, 11, 12, 13, 14]) == {"a": 4, "b": 2}
    assert index.matches([99, 10]) == {"c": 1, "a": 1, "b": 1}
    assert index.matches([7, 10]) == {}  # the walk stops at the first block nobody holds


def test_removing_an_endpoint_forgets_its_blocks_and_reuses_its_slot():
    index = PrefixIndex()
    index.credit("a", [1, 2])
    index.credit("b", [1])
    index.endpoint_removed("a")
    assert index.matches([1, 2]) == {"b": 1}
    index.credit("c", [2])
    assert index.matches([1, 2]) == {"b": 1, "c": 1}
    assert sorted(index.tracked_endpoints()) == ["b", "c"]


def test_auto_tune_takes_block_size_and_lru_capacity_from_metrics():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    endpoint = pool.get("10.0.0.1:8000")
    endpoint.metrics.block_size, endpoint.metrics.num_gpu_blocks = 32, 500
    index = PrefixIndex()
    request = SchedulingRequest("m", PromptInput(b"z" * 300))
    match = index.match(request, [endpoint])
    assert match.block_bytes == 128 and match.total == 3  # 300 bytes in blocks of 32 tokens x 4 bytes
    fixed = PrefixIndex(auto_tune=False)
    assert fixed.match(request, [endpoint]).block_bytes == 64
    assert PrefixIndex(hash_block_bytes=100).match(request, [endpoint]).total == 3
