"""Prompt bytes, chained block hashes and the per-endpoint LRU prefix index."""

import struct

import pytest
import xxhash

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import (
    ConfigError,
    PrefixIndex,
    PromptInput,
    SchedulingRequest,
    go_json,
    load_config,
    prefix_hashes,
)
from picker.scheduling.tokens import EstimateBackend, TokenProducer, VllmBackend


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
    assert prefix_hashes(b"x" * 63, "m", "", 64, 256) == []  # shorter than one block: no block
    assert len(prefix_hashes(b"x" * 64, "m", "", 64, 256)) == 1
    assert len(prefix_hashes(data, "llama", "salt", 64, 0)) == 400  # 0: no cap


def test_chat_prompt_bytes_are_the_tools_json_then_each_role_and_content():
    body = {
        "model": "m",
        "cache_salt": "s1",
        "tools": [{"type": "function", "function": {"name": "f<x>"}}],
        "messages": [
            {"role": "system", "content": "Be brief & <kind>."},
            {
                "role": "user",
                "name": "bob",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "http://x/y.png", "detail": "auto"}},
                    {"type": "text", "text": " there"},
                ],
            },
            {"content": "no role\n\u2028"},
        ],
    }
    prompt = PromptInput.from_body(body)
    tools = '[{"function":{"name":"f\\u003cx\\u003e"},"type":"function"}]'
    assert prompt.data.decode() == tools + "systemBe brief & <kind>." + "userhi there" + "no role\n\u2028"
    assert prompt.cache_salt == "s1"
    assert PromptInput.from_body({"messages": [{"role": "user", "content": "x"}]}).data == b"userx"


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


def test_blocks_are_auto_tuned_clamped_to_64_tokens_and_capped_in_tokens():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    endpoint = pool.get("10.0.0.1:8000")
    endpoint.metrics.block_size, endpoint.metrics.num_gpu_blocks = 128, 500
    index = PrefixIndex()
    request = SchedulingRequest("m", PromptInput(b"z" * 1300))  # 325 pseudo-tokens
    match = index.match(request, [endpoint])
    assert match.block_tokens == 128 and match.total == 3  # 2 blocks of 128 tokens and a partial one
    # the hashes are those of the bytes as 4-byte pseudo-tokens: the last token zero-padded
    assert match.hashes == prefix_hashes(b"z" * 1300 + b"\0\0\0\0"[: -1300 % 4], "m", "", 512, 0)
    fixed = PrefixIndex(auto_tune=False, block_size_tokens=16)  # below the clamp: 64 tokens
    assert fixed.match(request, [endpoint]).block_tokens == 64
    endpoint.metrics.block_size = 16  # vLLM's usual block size is clamped too
    assert index.match(request, [endpoint]).block_tokens == 64
    assert index.match(request, [endpoint]).cached_tokens("10.0.0.1:8000") == 0
    capped = PrefixIndex(max_prefix_tokens=128)  # 128 tokens = 2 blocks of 64
    assert capped.match(request, [endpoint]).total == 2
    by_blocks = PrefixIndex(max_prefix_tokens=0, max_prefix_blocks=1)
    assert by_blocks.match(request, [endpoint]).total == 1
    assert PrefixIndex().max_blocks(64) == 131072 // 64


def test_token_producer_backends_estimate_vllm_and_the_refused_uds():
    producer = TokenProducer()
    assert producer.backend.tokenize(SchedulingRequest("m", PromptInput(b"abcdefg"))).ids == b"abcdefg\0"
    assert producer.backend.tokenize(SchedulingRequest("m", PromptInput(b"abcdefg"))).count == 2
    header = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
    config = load_config(header + "- type: token-producer\n  parameters: {modelName: m}\n- type: prefix-cache-scorer\n")
    assert isinstance(config.profile().scorers[0][0].producer.tokens.backend, EstimateBackend)
    vllm = "- type: token-producer\n  parameters: {modelName: m, vllm: {url: http://x:8000}}\n"
    engine = load_config(header + vllm + "- type: prefix-cache-scorer\n")
    assert isinstance(engine.profile().scorers[0][0].producer.tokens.backend, VllmBackend)  # more in tests/kvcache
    with pytest.raises(ConfigError, match=r"needs vllm\.url"):
        load_config(header + "- type: token-producer\n  parameters: {backend: vllm}\n")
    with pytest.raises(ConfigError, match="'uds' tokenizer backend is not implemented yet"):
        load_config(header + "- type: token-producer\n  parameters: {udsTokenizerConfig: {socketFile: /tmp/t}}\n")
