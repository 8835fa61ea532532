"""`token-producer`: the token IDs of a request's prompt, which the approximate prefix index cuts into blocks.

A backend turns a `SchedulingRequest` into a `TokenizedPrompt` (token IDs as little-endian uint32 bytes):

- `estimate` (the default, no tokenizer): the prompt bytes of `PromptInput` packed as 4-byte pseudo-tokens, the last
  one zero-padded, so one pseudo-token stands for the 4 characters upstream estimates per token;
- a model server's tokenizer (parameters `vllm` or `udsTokenizerConfig`, or `backend: vllm|uds`): not implemented
  yet; the config is refused with a message saying so.

Another backend is one more `TokenBackend` class added to `BACKENDS`. The config's token producer (the first
declared, or an `estimate` one when none is) is shared through `BuildContext.shared` under `TOKEN_PRODUCER`; the
approximate prefix index reads it. Tokens are computed once per scheduling cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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

    @classmethod
    def create(cls, parameters: Any) -> TokenBackend:
        """The backend configured by a `token-producer`'s validated parameters (`TokenProducer.Parameters`)."""
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


BACKENDS: dict[str, type[TokenBackend]] = {EstimateBackend.name: EstimateBackend}


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
        producer = cls(name, backend_class.create(parameters))
        context.shared.setdefault(TOKEN_PRODUCER, producer)
        return producer

    def __init__(self, name: str = "", backend: TokenBackend | None = None) -> None:
        super().__init__(name)
        self.backend = backend if backend is not None else EstimateBackend()

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
