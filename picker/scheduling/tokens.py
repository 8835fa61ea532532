"""`token-producer`: the token IDs of a request's prompt, which the approximate prefix index cuts into blocks.

A backend turns a `SchedulingRequest` into a `TokenizedPrompt` (token IDs as little-endian uint32 bytes):

- `estimate` (the default, no tokenizer): the prompt bytes of `PromptInput` packed as 4-byte pseudo-tokens, the last
  one zero-padded, so one pseudo-token stands for the 4 characters upstream estimates per token;
- `vllm` (parameters `vllm: {url}`, or `backend: vllm`): a vLLM server's `/tokenize` endpoint at `url` tokenizes
  the request's prompt or chat messages for the model `modelName` (else the request's model), through
  `picker.kvcache.tokenizer.EngineTokenizer` (its timeout, cache of recent prompts and back-off after a failure);
  a request the server cannot tokenize (it is down, the body has no prompt) gets the `estimate` tokens;
- `uds` (`udsTokenizerConfig`, upstream's tokenizer sidecar on a Unix socket): not implemented; the config is refused
  with a message saying so.

Another backend is one more `TokenBackend` class added to `BACKENDS`. The config's token producer (the first
declared, or an `estimate` one when none is) is shared through `BuildContext.shared` under `TOKEN_PRODUCER`; the
approximate prefix index reads it, and the precise prefix producer uses its engine tokenizer (`request_tokenizer`)
when it has none of its own. Tokens are computed once per scheduling cycle; `prepare` computes them ahead of the
cycle, off the event loop, into the tokenizer's cache.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from picker.kvcache.tokenizer import EngineTokenizer, RequestTokenizer
from picker.scheduling.framework import CycleState, Plugin
from picker.scheduling.registry import BuildContext, ConfigError, PluginParameters, plugin
from picker.scheduling.request import CHARS_PER_TOKEN, SchedulingRequest

TOKEN_PRODUCER = "token-producer"  # BuildContext.shared key of the config's token producer
TOKEN_BYTES = 4  # token IDs are uint32


@dataclass(frozen=True, slots=True)
class TokenizedPrompt:
    """A prompt's token IDs, as little-endian uint32 values back to back."""

    ids: bytes

    @property
    def count(self) -> int:
        """How many tokens the prompt has."""
        return len(self.ids) // TOKEN_BYTES


class TokenBackend:
    """Turns a request's prompt into token IDs; `create` builds it from the token producer's parameters."""

    name: ClassVar[str] = ""
    request_tokenizer: RequestTokenizer | None = None  # the engine-exact tokenizer behind the backend, if any

    @classmethod
    def create(cls, name: str, parameters: Any) -> TokenBackend:
        """The backend configured by the validated parameters (`TokenProducer.Parameters`) of the plugin `name`."""
        return cls()

    def tokenize(self, request: SchedulingRequest) -> TokenizedPrompt:
        raise NotImplementedError


class EstimateBackend(TokenBackend):
    """No tokenizer: the prompt bytes packed as 4-byte little-endian pseudo-tokens (the last one zero-padded)."""

    name = "estimate"

    def tokenize(self, request: SchedulingRequest) -> TokenizedPrompt:
        data = request.prompt.data
        padding = -len(data) % CHARS_PER_TOKEN
        return TokenizedPrompt(data + b"\0" * padding if padding else data)


class VllmBackend(TokenBackend):
    """A vLLM server's `/tokenize` endpoint; the `estimate` tokens when it cannot answer."""

    name = "vllm"

    def __init__(self, tokenizer: RequestTokenizer) -> None:
        self.request_tokenizer = tokenizer
        self.fallback = EstimateBackend()

    @classmethod
    def create(cls, name: str, parameters: Any) -> VllmBackend:
        url = (parameters.vllm or {}).get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"plugin {name!r} (token-producer): the vllm backend needs vllm.url (the server's URL)")
        return cls(EngineTokenizer(url, parameters.modelName))

    def tokenize(self, request: SchedulingRequest) -> TokenizedPrompt:
        assert self.request_tokenizer is not None
        ids = self.request_tokenizer.tokenize(request.body) if request.body is not None else None
        if ids is None:
            return self.fallback.tokenize(request)
        packed = ids if isinstance(ids, array) and ids.itemsize == TOKEN_BYTES else array("I", ids)
        if sys.byteorder != "little":
            packed = array("I", packed)
            packed.byteswap()
        return TokenizedPrompt(packed.tobytes())


BACKENDS: dict[str, type[TokenBackend]] = {EstimateBackend.name: EstimateBackend, VllmBackend.name: VllmBackend}


@plugin("token-producer", "tokenizer")  # second name: the deprecated upstream type
class TokenProducer(Plugin):
    """Produces the token IDs of each request's prompt with one backend (see the module docstring)."""

    class Parameters(PluginParameters):
        modelName: str = ""
        backend: Literal["estimate", "vllm", "uds"] | None = None
        vllm: dict[str, Any] | None = None
        udsTokenizerConfig: dict[str, Any] | None = None

    build_order = -2  # before the prefix index that reads it

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> TokenProducer:
        backend = parameters.backend
        if backend is None:
            backend = "vllm" if parameters.vllm is not None else "uds" if parameters.udsTokenizerConfig else "estimate"
        backend_class = BACKENDS.get(backend)
        if backend_class is None:
            raise ConfigError(
                f"plugin {name!r} (token-producer): the {backend!r} tokenizer backend is not implemented yet; "
                f"poolgate has the backends {sorted(BACKENDS)} (backend: estimate needs no tokenizer)"
            )
        producer = cls(name, backend_class.create(name, parameters))
        context.shared.setdefault(TOKEN_PRODUCER, producer)
        return producer

    def __init__(self, name: str = "", backend: TokenBackend | None = None) -> None:
        super().__init__(name)
        self.backend = backend if backend is not None else EstimateBackend()

    @property
    def request_tokenizer(self) -> RequestTokenizer | None:
        """The engine-exact tokenizer of the backend (None for `estimate`)."""
        return self.backend.request_tokenizer

    @property
    def prepare_min_bytes(self) -> int | None:
        """The backend tokenizer's threshold for working off the event loop (None for `estimate`: nothing to do)."""
        tokenizer = self.backend.request_tokenizer
        return tokenizer.off_loop_min_bytes if tokenizer is not None else None

    def prepare(self, body: Mapping[str, Any]) -> None:
        """Tokenize a request body ahead of its cycle (into the tokenizer's cache), off the event loop."""
        if self.backend.request_tokenizer is not None:
            self.backend.request_tokenizer.tokenize(body)

    def cycle_tokens(self, cycle: CycleState) -> TokenizedPrompt:
        """The cycle's request tokenized, computed once per cycle."""
        tokens: TokenizedPrompt | None = cycle.step.get(id(self))
        if tokens is None:
            tokens = cycle.step[id(self)] = self.backend.tokenize(cycle.request)
        return tokens


def shared_token_producer(context: BuildContext) -> TokenProducer:
    """The config's token producer: the first declared one, or an `estimate` one."""
    producer: TokenProducer | None = context.shared.get(TOKEN_PRODUCER)
    if producer is None:
        producer = context.shared[TOKEN_PRODUCER] = TokenProducer(TOKEN_PRODUCER)
    return producer
