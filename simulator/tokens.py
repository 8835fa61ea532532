"""Cheap, deterministic stand-ins for a tokenizer, a chat template and a sampler.

- One token is 4 bytes of UTF-8 (the last token may be shorter), so a KV block of 16 tokens covers the same 64 bytes
  that the gateway's approximate prefix index hashes.
- A `Prompt` knows its token count and the chained content hashes of its full KV blocks, like vLLM's automatic
  prefix caching: block i's hash covers its own content and, through the chain, every block before it.
- Chat messages are rendered to one prompt string, role and content per message, so a growing conversation keeps
  its earlier turns as a prefix.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import xxhash
from tokenizers import Tokenizer

BYTES_PER_TOKEN = 4

_WORDS = ("lorem ", "ipsum ", "dolor ", "sit ", "amet ", "sed ", "do ", "magna ", "quis ", "nisi ", "ut ", "enim ")


class Prompt:
    """A prompt as the simulated engine sees it: a token count and the identity of its token blocks.

    Build one with `from_text`, `from_token_ids` or `from_segments`; the engine asks for `block_hashes(block_size,
    namespace)` (memoised), where the namespace (the model or adapter name) keeps different adapters' caches apart.
    """

    __slots__ = ("_full_blocks", "_hashes", "num_tokens", "text", "token_ids")

    def __init__(
        self,
        num_tokens: int,
        full_blocks: Callable[[int], Iterable[bytes]],
        text: str | None = None,
        token_ids: tuple[int, ...] | None = None,
    ) -> None:
        self.num_tokens = num_tokens
        self._full_blocks = full_blocks
        self._hashes: dict[tuple[int, str], tuple[int, ...]] = {}
        self.text = text  # the prompt text, when it was given as text
        self.token_ids = token_ids  # the token ids, when known (given as ids, or tokenized)

    @classmethod
    def from_text(cls, text: str) -> Prompt:
        """A prompt of UTF-8 text: ceil(bytes / 4) tokens."""
        data = text.encode()
        num_tokens = math.ceil(len(data) / BYTES_PER_TOKEN)

        def full_blocks(block_size: int) -> Iterator[bytes]:
            span = block_size * BYTES_PER_TOKEN
            for index in range(num_tokens // block_size):
                yield data[index * span : (index + 1) * span]

        return cls(num_tokens, full_blocks, text=text)

    @classmethod
    def from_token_ids(cls, token_ids: Sequence[int]) -> Prompt:
        """A prompt given as token ids (non-negative integers below 2**63)."""
        data = array("q", token_ids).tobytes()
        num_tokens = len(token_ids)

        def full_blocks(block_size: int) -> Iterator[bytes]:
            span = block_size * 8
            for index in range(num_tokens // block_size):
                yield data[index * span : (index + 1) * span]

        return cls(num_tokens, full_blocks, token_ids=tuple(token_ids))

    @classmethod
    def from_segments(cls, segments: Sequence[tuple[str, int]]) -> Prompt:
        """A prompt made of `(content identity, token count)` segments, without any text.

        Two prompts share a cacheable prefix exactly as far as their leading segments are equal (a partly shared
        segment shares nothing past its start). Use it in benchmarks: `[("system-7", 6000), ("user-123", 1000)]`.
        """
        if not segments or any(count < 1 for _, count in segments):
            raise ValueError("a prompt needs at least one segment and every segment at least one token")
        segments = tuple(segments)
        num_tokens = sum(count for _, count in segments)

        def full_blocks(block_size: int) -> Iterator[bytes]:
            index, offset = 0, 0
            for _ in range(num_tokens // block_size):
                need, parts = block_size, []
                while need:
                    identity, count = segments[index]
                    take = min(need, count - offset)
                    parts.append(f"{identity}\x00{offset}\x00{take}")
                    offset += take
                    need -= take
                    if offset == count:
                        index, offset = index + 1, 0
                yield "\x01".join(parts).encode()

        return cls(num_tokens, full_blocks)

    def ids(self) -> tuple[int, ...]:
        """The prompt's token ids when known, else one stand-in id per token of its text: the token's bytes read as
        an integer, so the same text always gives the same ids. ValueError for a prompt made of segments."""
        if self.token_ids is not None:
            return self.token_ids
        if self.text is None:
            raise ValueError("a prompt made of segments has no token ids")
        data = self.text.encode()
        return tuple(
            int.from_bytes(data[i : i + BYTES_PER_TOKEN], "little") for i in range(0, len(data), BYTES_PER_TOKEN)
        )

    def block_hashes(self, block_size: int, namespace: str) -> tuple[int, ...]:
        """Return the chained 64-bit hashes of the prompt's full blocks of `block_size` tokens."""
        key = (block_size, namespace)
        hashes = self._hashes.get(key)
        if hashes is None:
            chain = []
            previous = xxhash.xxh3_64_intdigest(namespace.encode())
            for content in self._full_blocks(block_size):
                previous = xxhash.xxh3_64_intdigest(content, seed=previous)
                chain.append(previous)
            hashes = self._hashes[key] = tuple(chain)
        return hashes


def byte_token_ids(text: str) -> tuple[int, ...]:
    """Stand-in token ids for a text without a tokenizer: one per 4 bytes of UTF-8 (the bytes as a little-endian
    number, the last token zero-padded), so that equal ids mean equal text, token for token."""
    data = text.encode()
    data += b"\x00" * (-len(data) % BYTES_PER_TOKEN)
    return tuple(array("I", data))


def load_tokenizer(path: str) -> Callable[[str], list[int]]:
    """The encoder of a Hugging Face tokenizer: `path` is a tokenizer.json or a directory holding one. Special
    tokens are not added (vLLM's chat template writes its own)."""
    file = Path(path)
    if file.is_dir():
        file = file / "tokenizer.json"
    if not file.is_file():
        raise ValueError(f"tokenizer: no tokenizer.json at {path}")
    tokenizer = Tokenizer.from_file(str(file))
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


def render_chat(messages: Iterable[tuple[str, str]]) -> str:
    """Render `(role, content)` pairs with a minimal chat template that ends with the assistant's turn."""
    rendered = "".join(f"<|{role}|>\n{content}<|end|>\n" for role, content in messages)
    return rendered + "<|assistant|>\n"


def synthetic_text(first_token: int, count: int) -> str:
    """Return `count` generated tokens (one short word each), starting at output position `first_token`."""
    return "".join(_WORDS[(first_token + index) % len(_WORDS)] for index in range(count))
