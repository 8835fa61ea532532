"""Analytic bounds from the simulator's latency parameters: the `oracle` lower bound, the `pooled` bound and the
fleet's capacity.

All three take the prefix reuse the workload allows at best: a request's cached prefix is the longest run of its full
prompt blocks (the simulator's block hashes, so adapters never share) that any earlier request already had, at
most `prompt - 1` tokens (the last prompt token is always computed). `uncached` is the rest of the prompt.

**Oracle** (a lower bound of every picker's latency): each request runs alone on an idle server as soon as it
arrives, with that prefix cached and its LoRA adapter resident:

    TTFT = ceil(uncached / max_num_batched_tokens) x prefill_overhead + uncached x prefill_per_token
    inter-token gap = decode_step (a batch of one)

Follow-up turns of a session arrive `think` seconds after the oracle's response ended.

The oracle is out of reach under load: it never waits for a place in a batch. **Pooled** (`pooled`) adds the
fleet's batch slots: the `pods x max_num_seqs` slots form one pool shared by all servers, and a request takes the
first free slot (first come, first served) with the oracle's cache, so

    TTFT = slot wait + prefill as above
    inter-token gap = decode_step(ceil(busy slots / pods)) (the busy slots spread evenly over the pods)

and it holds its slot until its last token: the oracle plus the fleet's slot limit, with perfect balance and every
prefix everywhere. What it leaves out (prefills sharing an engine step with the requests running beside them, a
request's gaps changing with later arrivals) only makes it lower.

**Capacity** (requests per second the fleet sustains at full batches with that reuse): per request a server spends

    ceil(uncached / max_num_batched_tokens) x prefill_overhead + uncached x prefill_per_token
    + (output - 1) x decode_step(max_num_seqs) / max_num_seqs

so capacity = pods x n / (sum of those times over the workload's first n requests), where n is the number of
requests the run sends at that capacity (found by fixed-point iteration when the run is given as a duration).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from itertools import islice

from poolgate.bench.routing.fleet import RequestRecord, RunResult, ServerPrompts
from poolgate.bench.routing.workloads import Workload, WorkloadSpec
from simulator import ServerConfig


class PrefixReuse:
    """The cached prefix each request gets at best: block hashes seen in any earlier request."""

    def __init__(self, config: ServerConfig, adapters: Iterable[str], prompts: ServerPrompts) -> None:
        self.config = config
        self.adapters = set(adapters)
        self.prompts = prompts
        self._seen: set[int] = set()

    def uncached(self, body: dict) -> tuple[int, int]:
        """(prompt tokens, uncached prompt tokens) of the next request; remembers its blocks for later ones."""
        config = self.config
        prompt = self.prompts(body)
        namespace = body["model"] if body["model"] in self.adapters else config.model
        hashes = prompt.block_hashes(config.block_size, namespace)
        cached = 0
        for block_hash in hashes[: (prompt.num_tokens - 1) // config.block_size]:
            if block_hash not in self._seen:
                break
            cached += 1
        self._seen.update(hashes)
        return prompt.num_tokens, prompt.num_tokens - cached * config.block_size


def prefill_seconds(config: ServerConfig, uncached: int) -> float:
    """Time to compute `uncached` prompt tokens on an otherwise idle server (chunked by the token budget)."""
    return (
        math.ceil(uncached / config.max_num_batched_tokens) * config.prefill_overhead
        + uncached * config.prefill_per_token
    )


def oracle_run(workload: Workload, config: ServerConfig, prompts: ServerPrompts | None = None) -> RunResult:
    """The oracle's records for a workload (see the module docstring)."""
    return _bound_run(workload, config, prompts, pods=None)


def pooled_run(workload: Workload, config: ServerConfig, pods: int, prompts: ServerPrompts | None = None) -> RunResult:
    """The pooled bound's records for a workload on `pods` servers (see the module docstring)."""
    return _bound_run(workload, config, prompts, pods)


def _bound_run(workload: Workload, config: ServerConfig, prompts: ServerPrompts | None, pods: int | None) -> RunResult:
    """The oracle (`pods` None: no slot limit, a batch of one) or the pooled bound (the fleet's slots in one pool)."""
    reuse = PrefixReuse(config, workload.adapters, prompts or ServerPrompts())
    slots = [0.0] * (pods * config.max_num_seqs) if pods else []  # when each batch slot is free next (a heap)
    pending = [(session.start, index, 0) for index, session in enumerate(workload.sessions)]
    heapq.heapify(pending)
    records = []
    while pending:
        arrival, index, turn_index = heapq.heappop(pending)
        turns = workload.sessions[index].turns
        turn = turns[turn_index]
        prompt_tokens, uncached = reuse.uncached(turn.body)
        if pods:
            start = max(arrival, heapq.heappop(slots))
            busy = 1 + sum(1 for free in slots if free > start)
            gap = config.decode_step_time(min(config.max_num_seqs, math.ceil(busy / pods)))
        else:
            start, gap = arrival, config.decode_step_time(1)
        first = start + prefill_seconds(config, uncached)
        finished = first + (turn.output_tokens - 1) * gap
        if pods:
            heapq.heappush(slots, finished)
        records.append(
            RequestRecord(
                index,
                turn_index,
                arrival,
                "ok",
                None,
                prompt_tokens,
                turn.output_tokens,
                prompt_tokens - uncached,
                first,
                finished,
                [[gap, turn.output_tokens - 1]] if turn.output_tokens > 1 else [],
            )
        )
        if turn_index + 1 < len(turns):
            heapq.heappush(pending, (finished + turns[turn_index + 1].think, index, turn_index + 1))
    end = max((r.finished_at for r in records if r.finished_at is not None), default=0.0)
    return RunResult(records, {}, end)


def _service_times(spec: WorkloadSpec, seed: int, config: ServerConfig) -> Iterable[float]:
    reuse = PrefixReuse(config, spec.adapters, ServerPrompts())
    per_token = config.decode_step_time(config.max_num_seqs) / config.max_num_seqs
    for turns in spec.content(seed):
        for turn in turns:
            _, uncached = reuse.uncached(turn.body)
            yield prefill_seconds(config, uncached) + (turn.output_tokens - 1) * per_token


def fleet_capacity(
    spec: WorkloadSpec,
    seed: int,
    pods: int,
    config: ServerConfig,
    *,
    requests: int | None = None,
    duration: float | None = None,
) -> float:
    """The fleet's capacity in requests per second for a run of `requests` requests or `duration` seconds."""
    if (requests is None) == (duration is None):
        raise ValueError("give either requests or duration")
    times = _service_times(spec, seed, config)
    cumulative: list[float] = []

    def capacity(n: int) -> float:
        n = max(1, n)
        total = 0.0 if not cumulative else cumulative[-1]
        for service in islice(times, max(0, n - len(cumulative))):
            total += service
            cumulative.append(total)
        n = min(n, len(cumulative))
        return pods * n / cumulative[n - 1]

    if requests is not None:
        return capacity(requests)
    assert duration is not None  # checked above: exactly one of the two is given
    rate = capacity(1000)
    for _ in range(4):
        rate = capacity(round(rate * duration))
    return rate
