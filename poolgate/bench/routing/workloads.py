"""The routing benchmark's workloads: what clients send (OpenAI chat bodies) and when.

A workload is a list of sessions. A session starts at an arrival time and sends its turns one after the other:
turn k+1 goes out `think` seconds after the response to turn k ended (a chat user reading and typing). Single-turn
workloads have one turn per session, so their arrivals are open-loop.

Content and arrival times come from separate random streams seeded by the workload name and `--seed`: the
sequence of request contents is the same at every rate, and the arrival pattern is the same unit-rate pattern
scaled to the rate. Prompt text is random hexadecimal (4 characters = 1 simulated token, and nothing that JSON
escapes), so a prompt of n tokens is exactly 4n characters of message content.

| workload | sessions | prompt (tokens) | output (tokens) | arrivals |
|---|---|---|---|---|
| `prefix-heavy` | 1 turn | one of 150 group system prompts (6,000) + a fresh question (1,200) | 1,000 | Poisson |
| `no-prefix` | 1 turn | one unique user message, lognormal (median 300, sigma 1.0, 16..8,000) | lognormal (median 200, sigma 0.8, 4..2,000) | Poisson |
| `multi-turn` | 3..10 turns | one of 20 system prompts (1,000) + the history + a new user message (lognormal median 150, sigma 0.8) | lognormal (median 250, sigma 0.6, 8..1,500) | Poisson session starts; think time exponential, mean 5 s |
| `multi-lora` | 1 turn | one of 8 adapters (Zipf popularity, exponent 1): its system prompt (500) + a no-prefix message | as no-prefix | Poisson |
| `cache-pressure` | 1 turn | one of 3,000 group system prompts (6,000; Zipf popularity, exponent 1) + a fresh question (1,200) | 300 | Poisson |
| `bursty` | 1 turn | as no-prefix | as no-prefix | gamma inter-arrival times, shape 0.25 (coefficient of variation 2) |

**Shapes.** `prefix-heavy` and the single-turn ShareGPT-like workloads take a shape: `-p<N>` sets the shared
system prompt to N tokens (prefix-heavy only) and `-o<N>` caps every output at N tokens (a request's `max_tokens`
is min(its own length, N)). `prefix-heavy-p1500-o64` is prefix-heavy with 1,500-token system prompts and 64 output
tokens, `no-prefix-o256` no-prefix with outputs of at most 256 tokens; `workload_spec(name)` resolves such names.
A shape keeps the arrival times of the seed, and an output cap keeps its prompts.

`prefix-heavy` has the sizes of inference-perf's shared-prefix workload (llm-d's prefix-cache benchmark: 150
groups, 6,000-token system prompts, 1,200-token questions, 1,000 output tokens) with one difference: every request
asks a fresh question of a uniformly drawn group. inference-perf generates 5 questions per group and cycles through
the 750 prompts, so that a run's first pass is all cache misses and every later pass all hits — a load that changes
over time, on which a fraction of capacity means nothing. Drawing fresh questions keeps the load stationary: once
every group has been seen, the best reuse is the 6,000-token system prompt.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from simulator.tokens import synthetic_text

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CHAT_PATH = "/v1/chat/completions"
ADAPTERS = tuple(f"adapter-{i}" for i in range(8))


@dataclass(frozen=True, slots=True)
class Turn:
    """One request of a session: the chat body the client sends and the tokens the server will generate."""

    body: dict[str, Any]
    output_tokens: int
    think: float = 0.0  # seconds between the end of the previous turn's response and this request


@dataclass(frozen=True, slots=True)
class Session:
    """A client session: its first request's arrival time and its turns."""

    start: float
    turns: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class Workload:
    """The sessions of one run of a workload at one rate."""

    name: str
    rate: float  # requests per second (multi-turn: session starts per second x mean turns per session)
    duration: float  # seconds during which sessions start
    sessions: list[Session]
    adapters: tuple[str, ...] = ()


def text(rng: random.Random, tokens: int) -> str:
    """Random message content of exactly `tokens` simulated tokens (4 hexadecimal characters each)."""
    return rng.randbytes(2 * tokens).hex()


def chat_body(model: str, messages: list[dict[str, str]], output_tokens: int) -> dict[str, Any]:
    """The OpenAI chat-completions body a streaming client sends."""
    return {
        "model": model,
        "messages": messages,
        "max_tokens": output_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return min(high, max(low, round(rng.lognormvariate(math.log(median), sigma))))


def _sharegpt_lengths(rng: random.Random) -> tuple[int, int]:
    """ShareGPT-like (prompt, output) token counts."""
    return _lognormal(rng, 300, 1.0, 16, 8000), _lognormal(rng, 200, 0.8, 4, 2000)


# -- content: infinite sequences of sessions' turns -------------------------------------------------------------

PREFIX_GROUPS, SYSTEM_TOKENS, QUESTION_TOKENS, PREFIX_OUTPUT_TOKENS = 150, 6000, 1200, 1000


def _prefix_heavy(
    rng: random.Random, prompt_tokens: int = SYSTEM_TOKENS, output_tokens: int = PREFIX_OUTPUT_TOKENS
) -> Iterator[tuple[Turn, ...]]:
    systems = [{"role": "system", "content": text(rng, prompt_tokens)} for _ in range(PREFIX_GROUPS)]
    while True:
        messages = [rng.choice(systems), {"role": "user", "content": text(rng, QUESTION_TOKENS)}]
        yield (Turn(chat_body(MODEL, messages, output_tokens), output_tokens),)


def _no_prefix(rng: random.Random, output_tokens: int | None = None) -> Iterator[tuple[Turn, ...]]:
    while True:
        prompt, output = _sharegpt_lengths(rng)
        output = min(output, output_tokens or output)
        yield (Turn(chat_body(MODEL, [{"role": "user", "content": text(rng, prompt)}], output), output),)


PRESSURE_GROUPS, PRESSURE_OUTPUT_TOKENS, PRESSURE_ZIPF_EXPONENT = 3000, 300, 1.0


def _cache_pressure(rng: random.Random) -> Iterator[tuple[Turn, ...]]:
    """prefix-heavy's shapes over more groups than the fleet can cache, drawn by Zipf popularity."""
    systems = [{"role": "system", "content": text(rng, SYSTEM_TOKENS)} for _ in range(PRESSURE_GROUPS)]
    weights = [1.0 / (rank + 1) ** PRESSURE_ZIPF_EXPONENT for rank in range(PRESSURE_GROUPS)]
    while True:
        messages = [rng.choices(systems, weights)[0], {"role": "user", "content": text(rng, QUESTION_TOKENS)}]
        yield (Turn(chat_body(MODEL, messages, PRESSURE_OUTPUT_TOKENS), PRESSURE_OUTPUT_TOKENS),)


CHAT_SYSTEM_PROMPTS, CHAT_SYSTEM_TOKENS, CHAT_MIN_TURNS, CHAT_MAX_TURNS, THINK_MEAN = 20, 1000, 3, 10, 5.0


def _multi_turn(rng: random.Random) -> Iterator[tuple[Turn, ...]]:
    systems = [{"role": "system", "content": text(rng, CHAT_SYSTEM_TOKENS)} for _ in range(CHAT_SYSTEM_PROMPTS)]
    while True:
        history = [rng.choice(systems)]
        turns = []
        for index in range(rng.randint(CHAT_MIN_TURNS, CHAT_MAX_TURNS)):
            history = history + [{"role": "user", "content": text(rng, _lognormal(rng, 150, 0.8, 8, 2000))}]
            output = _lognormal(rng, 250, 0.6, 8, 1500)
            think = rng.expovariate(1.0 / THINK_MEAN) if index else 0.0
            turns.append(Turn(chat_body(MODEL, history, output), output, think))
            # the client sends the simulator's answer back as history
            history = history + [{"role": "assistant", "content": synthetic_text(0, output)}]
        yield tuple(turns)


ADAPTER_SYSTEM_TOKENS, ZIPF_EXPONENT = 500, 1.0


def _multi_lora(rng: random.Random, output_tokens: int | None = None) -> Iterator[tuple[Turn, ...]]:
    systems = {name: {"role": "system", "content": text(rng, ADAPTER_SYSTEM_TOKENS)} for name in ADAPTERS}
    weights = [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(ADAPTERS))]
    while True:
        adapter = rng.choices(ADAPTERS, weights)[0]
        prompt, output = _sharegpt_lengths(rng)
        output = min(output, output_tokens or output)
        messages = [systems[adapter], {"role": "user", "content": text(rng, prompt)}]
        yield (Turn(chat_body(adapter, messages, output), output),)


# -- arrivals: unit-rate inter-arrival gaps -----------------------------------------------------------------


def _poisson(rng: random.Random) -> float:
    return rng.expovariate(1.0)


BURST_SHAPE = 0.25


def _gamma(rng: random.Random) -> float:
    return rng.gammavariate(BURST_SHAPE, 1.0 / BURST_SHAPE)


# shape axes: name suffix letter -> the keyword argument of a workload's content generator it sets
SHAPE_AXES = {"p": "prompt_tokens", "o": "output_tokens"}
_SHAPED_NAME = re.compile(r"(?P<base>.+?)(?:-p(?P<p>[1-9][0-9]*))?(?:-o(?P<o>[1-9][0-9]*))?")


@dataclass(frozen=True)
class WorkloadSpec:
    """A named workload: its content generator and its arrival process (unit-rate gaps)."""

    name: str
    description: str
    contents: Callable[..., Iterator[tuple[Turn, ...]]]
    gaps: Callable[[random.Random], float] = _poisson
    adapters: tuple[str, ...] = field(default=())
    mean_turns: float = 1.0
    shape_axes: str = ""  # the shape axes (letters of SHAPE_AXES) its content generator takes
    family: str = ""  # the unshaped workload's name, which seeds the random streams ("": `name`)

    def content(self, seed: int) -> Iterator[tuple[Turn, ...]]:
        """The session contents, in sending order (the same for every rate)."""
        return self.contents(random.Random(f"{self.family or self.name}/content/{seed}"))

    def shaped(self, prompt_tokens: int | None = None, output_tokens: int | None = None) -> WorkloadSpec:
        """This workload with other lengths (see Shapes in the module docstring), named after them."""
        values = {"p": prompt_tokens, "o": output_tokens}
        given = {axis: value for axis, value in values.items() if value is not None}
        for axis, value in given.items():
            if axis not in self.shape_axes:
                raise ValueError(
                    f"workload {self.name!r} takes no {SHAPE_AXES[axis]} (its shape axes: "
                    f"{', '.join(SHAPE_AXES[a] for a in self.shape_axes) or 'none'})"
                )
            if value < 1:
                raise ValueError(f"{SHAPE_AXES[axis]} must be at least 1, not {value}")
        if not given:
            return self
        suffix = "".join(f"-{axis}{value}" for axis, value in given.items())
        keywords = {SHAPE_AXES[axis]: value for axis, value in given.items()}
        return replace(self, name=self.name + suffix, contents=partial(self.contents, **keywords), family=self.name)

    def build(self, rate: float, seed: int, duration: float, ramp: float = 0.0) -> Workload:
        """The sessions that start within `duration` seconds at `rate` requests per second, the rate rising
        linearly from 0 during the first `ramp` seconds."""
        gaps = random.Random(f"{self.family or self.name}/arrivals/{seed}")
        session_rate = rate / self.mean_turns
        sessions = []
        units = 0.0  # arrivals of the unit-rate process so far, mapped onto time by the rate profile
        for turns in self.content(seed):
            units += self.gaps(gaps)
            time = ramped_time(units / session_rate, ramp)
            if time >= duration:
                break
            sessions.append(Session(time, turns))
        return Workload(self.name, rate, duration, sessions, self.adapters)


def ramped_time(full_rate_time: float, ramp: float) -> float:
    """When the arrival due at `full_rate_time` under a constant rate comes when the rate ramps up linearly over
    the first `ramp` seconds (the inverse of the cumulative rate profile)."""
    if full_rate_time >= ramp / 2:
        return full_rate_time + ramp / 2
    return math.sqrt(2 * ramp * full_rate_time)


WORKLOADS: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in (
        WorkloadSpec(
            "prefix-heavy",
            "150 groups: 6,000-token shared system prompt + fresh 1,200-token question, 1,000 output tokens, Poisson",
            _prefix_heavy,
            shape_axes="po",
        ),
        WorkloadSpec(
            "no-prefix",
            "ShareGPT-like lognormal prompt/output lengths, unique prompts, Poisson",
            _no_prefix,
            shape_axes="o",
        ),
        WorkloadSpec(
            "multi-turn",
            "chat sessions of 3-10 turns with growing history, 20 system prompts, think time 5 s",
            _multi_turn,
            mean_turns=(CHAT_MIN_TURNS + CHAT_MAX_TURNS) / 2,
        ),
        WorkloadSpec(
            "multi-lora",
            "8 LoRA adapters with Zipf popularity (max_loras 4), ShareGPT-like lengths",
            _multi_lora,
            adapters=ADAPTERS,
            shape_axes="o",
        ),
        WorkloadSpec(
            "cache-pressure",
            "3,000 groups (Zipf popularity): 6,000-token system prompt + fresh 1,200-token question, 300 output "
            "tokens, Poisson; the system prompts need 5x the KV cache of 8 pods",
            _cache_pressure,
        ),
        WorkloadSpec(
            "bursty",
            "ShareGPT-like lengths, gamma arrivals (shape 0.25: coefficient of variation 2)",
            _no_prefix,
            gaps=_gamma,
            shape_axes="o",
        ),
    )
}


def workload_spec(name: str) -> WorkloadSpec:
    """The workload of a name, shaped when the name ends in shape suffixes (`prefix-heavy-p1500-o64`)."""
    spec = WORKLOADS.get(name)
    if spec is not None:
        return spec
    match = _SHAPED_NAME.fullmatch(name)
    base = WORKLOADS.get(match["base"]) if match else None
    if match is None or base is None or not (match["p"] or match["o"]):
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)} (with -p<N>/-o<N> shapes)")
    return base.shaped(*(int(match[axis]) if match[axis] else None for axis in SHAPE_AXES))
