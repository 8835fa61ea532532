"""Micro-benchmark of the precise prefix cache (`poolgate bench picker --tokenizer DIR` prints its rows):

- `precise-index-memory`: Python heap growth (tracemalloc) of one endpoint's block index holding `blocks` blocks of
  16 tokens, ingested from events of 10 blocks each;
- `tokenize`: per chat request of about 1, 10 and 100 KB (a system and a user message), the chat template + encode
  time of `LocalTokenizer` (its cache of recent prompts bypassed) and the time to cut the tokens into block keys.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from picker.kvcache.events import BlockHash, BlockStored, EventBatch
from picker.kvcache.index import BlockIndex, request_keys
from picker.kvcache.tokenizer import LocalTokenizer

_WORDS = [
    "the",
    "model",
    "caches",
    "every",
    "block",
    "of",
    "a",
    "prompt",
    "it",
    "has",
    "seen",
    "so",
    "the",
    "router",
    "should",
    "send",
    "it",
    "back",
    "there",
]


def measure_index_memory(blocks: int = 31250, seed: int = 0) -> dict:
    """Heap bytes one endpoint's index takes for `blocks` cached blocks."""
    rng = random.Random(seed)
    batches, parent = [], None
    for seq in range(blocks // 10):
        hashes: list[BlockHash] = [rng.getrandbits(64) for _ in range(10)]
        batches.append(EventBatch("kv@b@m", seq, 0.0, [BlockStored(hashes, parent, [rng.randrange(50_000)] * 160, 16)]))
        parent = hashes[-1]
    index = BlockIndex()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for batch in batches:
        index.ingest("b", batch)
    used = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    return {
        "benchmark": "precise-index-memory",
        "blocks": index.block_count("b"),
        "mb_per_endpoint": round(used / 1e6, 2),
        "bytes_per_block": round(used / max(1, index.block_count("b"))),
    }


def measure_tokenize(tokenizer_dir: str | Path, size: int, repeats: int = 20, seed: int = 0) -> dict:
    """Template + encode and block-key time for one chat request of about `size` bytes."""
    rng = random.Random(seed)
    tokenizer = LocalTokenizer(tokenizer_dir, cache_tokens=0)
    text = " ".join(rng.choice(_WORDS) for _ in range(size // 4))[:size]
    body = {
        "messages": [{"role": "system", "content": text[: size // 2]}, {"role": "user", "content": text[size // 2 :]}]
    }
    tokens: Sequence[int] = []
    start = time.perf_counter()
    for _ in range(repeats):
        tokens = tokenizer.tokenize(body) or []
    encode = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        request_keys(tokens, 16)
    keys = (time.perf_counter() - start) / repeats
    return {
        "benchmark": "tokenize",
        "body_kb": size // 1000,
        "tokens": len(tokens),
        "template_encode_ms": round(encode * 1e3, 2),
        "block_keys_ms": round(keys * 1e3, 3),
    }
