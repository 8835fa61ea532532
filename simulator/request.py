"""A request inside a simulated server, and its record once done."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Request:
    """One request inside a simulated server, and its record once done (times are clock seconds)."""

    id: int
    model: str
    adapter: str | None
    prompt_tokens: int
    max_tokens: int
    target_tokens: int  # tokens it will generate (max_tokens unless the caller said fewer)
    arrival: float
    block_hashes: tuple[int, ...]
    total_blocks: int
    on_finish: Callable[[Request], None] | None = None
    on_tokens: Callable[[Request], None] | None = None
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    output_tokens: int = 0
    cached_tokens: int = 0
    remote_prefilled: bool = False  # prefilled on another server (P/D): its KV arrives, only the last token computes
    prefill_left: int = 0
    token_ids: tuple[int, ...] = ()  # the prompt's token ids, when known (for KV events)
    aborted: bool = False
    itl_runs: list[list[float]] = field(default_factory=list)  # [gap seconds, how many consecutive gaps of that length]

    @property
    def done(self) -> bool:
        """Whether the request finished or was aborted."""
        return self.finished_at is not None

    @property
    def ttft(self) -> float | None:
        """Time to first token (from arrival), once known."""
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    @property
    def e2e(self) -> float | None:
        """End-to-end latency (from arrival to the last token), once finished."""
        return None if self.finished_at is None else self.finished_at - self.arrival

    @property
    def queue_time(self) -> float | None:
        """Time spent waiting before admission, once admitted."""
        return None if self.admitted_at is None else self.admitted_at - self.arrival

    @property
    def finish_reason(self) -> str:
        """OpenAI's finish reason: "length" when max_tokens was reached, else "stop"."""
        return "length" if self.output_tokens >= self.max_tokens else "stop"

    def itl_gaps(self) -> list[float]:
        """Every inter-token gap in order (output_tokens - 1 values)."""
        return [gap for gap, count in self.itl_runs for _ in range(int(count))]

    def itl_percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100, nearest rank) of the inter-token gaps, or None without any gap."""
        return weighted_percentile(self.itl_runs, q)

    def record_gaps(self, gap: float, count: int) -> None:
        """Append `count` inter-token gaps of `gap` seconds (the engine calls this)."""
        runs = self.itl_runs
        if runs and runs[-1][0] == gap:
            runs[-1][1] += count
        else:
            runs.append([gap, count])


def weighted_percentile(runs: Iterable[Sequence[float]], q: float) -> float | None:
    """The q-th percentile (0..100, nearest rank) of values given as (value, how many times) pairs; None when
    there is no value."""
    ordered = sorted((value, count) for value, count in runs)
    total = sum(count for _, count in ordered)
    if not total:
        return None
    rank: float = max(1, math.ceil(q / 100 * total))
    for value, count in ordered:
        rank -= count
        if rank <= 0:
            return value
    return ordered[-1][0]
