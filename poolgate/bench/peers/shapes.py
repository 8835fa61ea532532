"""The peers benchmark's workload shapes: prefix-heavy and no-prefix chat traffic at several output lengths.

Built from the routing benchmark's public pieces (`WorkloadSpec`, `Turn`, `chat_body`, `text`), so the request
contents and arrival times of a shape are the same at every rate and for every system (seeded by the shape's name
and `--seed`), and the virtual-clock routing benchmark can run the very same `WorkloadSpec`.

| shape | prompt (tokens) | output (tokens) |
|---|---|---|
| `prefix-<S>-out<N>` | one of 32 group system prompts (S = 1.5k or 6k) + a fresh 1,200-token question | N |
| `no-prefix-out<N>` | one unique user message, lognormal (median 300, sigma 1.0, 16..8,000) | N |

N is 64, 256 or 1,000 tokens; arrivals are Poisson. 32 system-prompt groups (4 per pod of the default 8-pod fleet;
the routing benchmark's own prefix-heavy workload has 150) keep the cold first pass over the groups short enough for
runs of a minute: the first sight of each group is a full prefill on every system.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from poolgate.bench.routing.workloads import MODEL, Turn, WorkloadSpec, chat_body, text

GROUPS, QUESTION_TOKENS = 32, 1200
SYSTEM_PROMPT_TOKENS = {"1.5k": 1500, "6k": 6000}
OUTPUT_TOKENS = (64, 256, 1000)
NO_PREFIX_MEDIAN, NO_PREFIX_SIGMA, NO_PREFIX_MIN, NO_PREFIX_MAX = 300, 1.0, 16, 8000


@dataclass(frozen=True)
class Shape:
    """A workload shape: shared system prompt length (0: no shared prefix) and output length."""

    system_tokens: int
    output_tokens: int

    @property
    def name(self) -> str:
        """`prefix-6k-out64`, `no-prefix-out256`, ..."""
        if not self.system_tokens:
            return f"no-prefix-out{self.output_tokens}"
        size = next(label for label, tokens in SYSTEM_PROMPT_TOKENS.items() if tokens == self.system_tokens)
        return f"prefix-{size}-out{self.output_tokens}"

    def spec(self) -> WorkloadSpec:
        """The shape as a routing-benchmark workload (content generator and Poisson arrivals)."""
        if self.system_tokens:
            description = (
                f"{GROUPS} groups: {self.system_tokens:,}-token shared system prompt + fresh "
                f"{QUESTION_TOKENS:,}-token question, {self.output_tokens:,} output tokens, Poisson"
            )
            return WorkloadSpec(self.name, description, self._prefix_heavy)
        description = f"unique lognormal prompts (median {NO_PREFIX_MEDIAN}), {self.output_tokens:,} output tokens"
        return WorkloadSpec(self.name, description, self._no_prefix)

    def _prefix_heavy(self, rng: random.Random) -> Iterator[tuple[Turn, ...]]:
        systems = [{"role": "system", "content": text(rng, self.system_tokens)} for _ in range(GROUPS)]
        while True:
            messages = [rng.choice(systems), {"role": "user", "content": text(rng, QUESTION_TOKENS)}]
            yield (Turn(chat_body(MODEL, messages, self.output_tokens), self.output_tokens),)

    def _no_prefix(self, rng: random.Random) -> Iterator[tuple[Turn, ...]]:
        while True:
            prompt = round(rng.lognormvariate(math.log(NO_PREFIX_MEDIAN), NO_PREFIX_SIGMA))
            prompt = min(NO_PREFIX_MAX, max(NO_PREFIX_MIN, prompt))
            messages = [{"role": "user", "content": text(rng, prompt)}]
            yield (Turn(chat_body(MODEL, messages, self.output_tokens), self.output_tokens),)


SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in [Shape(tokens, out) for tokens in SYSTEM_PROMPT_TOKENS.values() for out in OUTPUT_TOKENS]
    + [Shape(0, out) for out in OUTPUT_TOKENS]
}
QUICK_SHAPES = ("prefix-6k-out64", "no-prefix-out256")
