"""The engine model of one simulated vLLM/SGLang server: continuous batching over steps, on any clock.

Each engine step serves, like vLLM's scheduler, first the running requests (one decode token each, then the next
chunk of any unfinished prefill) and then admits waiting requests in FIFO order while there are free sequence slots
(`max_num_seqs`), token budget (`max_num_batched_tokens`) and KV blocks for the whole request (prompt plus output).
A request for a LoRA adapter is skipped (stays waiting, in order) while `max_loras` other adapters fill the batch;
a request that does not fit in the KV cache blocks the queue behind it.

Step time = decode part + prefill part:
- decode part, when the step decodes n requests: `decode_step * (1 + (n-1)/(max_num_seqs-1) * (full_batch_slowdown-1))`;
- prefill part, when the step computes prompt tokens: `prefill_overhead + uncached prompt tokens * prefill_per_token
  + lora_load per adapter that had to be loaded`.
A request's first token comes at the end of the step that completes its prefill, then one token per step.

The engine does not tick token by token: between events (an arrival that could join, a prefill, a finish) the batch
is constant, so it schedules one timer at the end of a span of identical decode steps. Requests that stream
(`on_tokens`) are served step by step so that each token can be delivered on time.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client.samples import Sample

from simulator.clock import Clock, TimerHandle
from simulator.config import ServerConfig
from simulator.kvcache import KVCache
from simulator.kvevents import Event, KVEventPublisher, KVEventSink, block_removed, block_stored
from simulator.lora import AdapterSlots
from simulator.metrics import EngineStats, gauge_families
from simulator.request import Request
from simulator.tokens import Prompt, byte_token_ids, load_tokenizer

log = logging.getLogger("poolgate.simulator")

_LORA_INFO_SERIES = 16  # newest lora_requests_info label sets kept, like the series a vLLM pod accumulates


class UnknownModelError(LookupError):
    """The request names neither the base model nor a loaded adapter."""


class InvalidRequestError(ValueError):
    """The request can never be served (too long for the model or the KV cache, nothing to generate...)."""


@dataclass(frozen=True)
class Gauges:
    """The scheduler state a metrics scrape would show."""

    waiting: int
    running: int
    kv_cache_usage: float
    running_adapters: tuple[str, ...]
    waiting_adapters: tuple[str, ...]


@dataclass(eq=False, slots=True)
class _Span:
    start: float
    step_time: float
    steps: int
    decoders: list[Request]
    prefill: list[tuple[Request, int]]
    timer: TimerHandle | None = None

    @property
    def end(self) -> float:
        return self.start + self.steps * self.step_time


class ServerModel:
    """One simulated model server: catalog (base model + LoRA adapters), scheduler, KV cache and statistics.

    Its KV events (vLLM's, see `simulator.kvevents`) go to `kv_events`, by default a ZMQ publisher when the config
    names an endpoint."""

    def __init__(
        self,
        clock: Clock,
        config: ServerConfig = ServerConfig(),
        adapters: Mapping[str, str] | None = None,
        name: str = "",
        kv_events: KVEventSink | None = None,
    ) -> None:
        self.clock = clock
        self.config = config
        self.name = name
        self.stats = EngineStats()
        self._evicted: list[int] = []
        self.kv = KVCache(config.num_gpu_blocks, on_evict=self._evicted.append)
        self._encode = load_tokenizer(config.tokenizer) if config.tokenizer else None
        self.kv_events: KVEventSink | None = kv_events
        if kv_events is None and config.kv_events_endpoint:
            topic = config.kv_events_topic or f"kv@{name}@{config.model}"
            self.kv_events = KVEventPublisher(config.kv_events_endpoint, topic, config.kv_events_interface)
        self._lora_ids: dict[str, int] = {}  # adapter -> vLLM's lora_int_id (1, 2, ... in load order)
        self.slots = AdapterSlots(config.max_loras)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._adapters: dict[str, str] = {}
        self._running_adapters: dict[str, int] = {}
        self._waiting_adapters: dict[str, int] = {}
        self._lora_info: dict[tuple[str, str], float] = {}
        self._span: _Span | None = None
        self._wakeup: TimerHandle | None = None
        self._advancing = False
        self._next_id = 0
        for adapter, path in (adapters or {}).items():
            self.load_adapter(adapter, path)
        self._touch_lora_info()

    # -- catalog ---------------------------------------------------------------------------------------------

    @property
    def adapters(self) -> dict[str, str]:
        """Loaded LoRA adapters: name -> path."""
        return dict(self._adapters)

    def load_adapter(self, name: str, path: str) -> None:
        """Register a LoRA adapter (it is loaded onto the GPU on first use); ValueError if it cannot be."""
        if self.config.max_loras == 0:
            raise ValueError("LoRA is disabled on this server (max_loras is 0)")
        if name == self.config.model or name in self._adapters:
            raise ValueError(f"The lora adapter '{name}' has already been loaded.")
        self._adapters[name] = path
        self._lora_ids.setdefault(name, len(self._lora_ids) + 1)

    def unload_adapter(self, name: str) -> None:
        """Remove a LoRA adapter (requests already accepted still finish); UnknownModelError if not loaded."""
        if name not in self._adapters:
            raise UnknownModelError(f"The lora adapter '{name}' cannot be found.")
        del self._adapters[name]
        self.slots.drop(name)

    def resolve(self, model: str | None) -> str | None:
        """Return the adapter a model name stands for (None for the base model); UnknownModelError otherwise."""
        if model is None or model == self.config.model:
            return None
        if model in self._adapters:
            return model
        raise UnknownModelError(f"The model `{model}` does not exist.")

    def prompt_token_ids(self, prompt: Prompt) -> tuple[int, ...]:
        """The token ids the engine computes a prompt as (what vLLM's render endpoints answer): the tokenizer's when
        one is configured, else the simulator's stand-in ids (`Prompt.ids`)."""
        if self._encode is not None and prompt.token_ids is None and prompt.text is not None:
            return tuple(self._encode(prompt.text))
        return prompt.ids()

    # -- requests --------------------------------------------------------------------------------------------

    def token_ids(self, text: str) -> list[int]:
        """The token ids of a prompt text: its tokenizer's, or one per 4 bytes without one (`byte_token_ids`)."""
        return self._encode(text) if self._encode is not None else list(byte_token_ids(text))

    def submit(
        self,
        prompt: Prompt,
        max_tokens: int,
        model: str | None = None,
        on_finish: Callable[[Request], None] | None = None,
        on_tokens: Callable[[Request], None] | None = None,
        output_tokens: int | None = None,
        remote_prefilled: bool = False,
    ) -> Request:
        """Accept a request now; the engine generates `output_tokens` (default `max_tokens`) tokens.

        `remote_prefilled`: another server prefilled the prompt (P/D disaggregation) and its KV is transferred, so
        the engine computes only the prompt's last token, as vLLM does with a KV connector.

        `on_finish(request)` runs when the last token is out; `on_tokens(request)` (streaming) runs whenever new
        tokens are out, at each step. Raises UnknownModelError or InvalidRequestError instead of accepting.
        """
        config = self.config
        adapter = self.resolve(model)
        if self._encode is not None and prompt.token_ids is None and prompt.text is not None:
            prompt = Prompt.from_token_ids(self._encode(prompt.text))
        target = max_tokens if output_tokens is None else min(output_tokens, max_tokens)
        if target < 1:
            raise InvalidRequestError("max_tokens must be at least 1")
        if prompt.num_tokens < 1:
            raise InvalidRequestError("The prompt is empty.")
        if prompt.num_tokens + max_tokens > config.max_model_len:
            raise InvalidRequestError(
                f"This model's maximum context length is {config.max_model_len} tokens. However, you requested "
                f"{prompt.num_tokens + max_tokens} tokens ({prompt.num_tokens} in the messages, {max_tokens} in the "
                f"completion). Please reduce the length of the messages or completion."
            )
        total_blocks = math.ceil((prompt.num_tokens + target) / config.block_size)
        if total_blocks > config.num_gpu_blocks:
            raise InvalidRequestError(
                f"The request needs {total_blocks} KV cache blocks but the server has {config.num_gpu_blocks}."
            )
        hashes = prompt.block_hashes(config.block_size, adapter or config.model) if config.prefix_caching else ()
        self._next_id += 1
        request = Request(
            id=self._next_id,
            model=model or config.model,
            adapter=adapter,
            prompt_tokens=prompt.num_tokens,
            max_tokens=max_tokens,
            target_tokens=target,
            arrival=self.clock.now(),
            block_hashes=hashes,
            total_blocks=total_blocks,
            token_ids=prompt.token_ids or (),
            on_finish=on_finish,
            on_tokens=on_tokens,
            remote_prefilled=remote_prefilled,
        )
        self.waiting.append(request)
        if adapter is not None:
            _count(self._waiting_adapters, adapter, +1)
            self._touch_lora_info()
        if not self._advancing:  # (between two spans the engine looks at the queue anyway)
            if self._span is None:
                self._wake()
            elif len(self.running) < config.max_num_seqs:
                self._end_span_at_next_step(request.arrival)
        return request

    def abort(self, request: Request) -> None:
        """Stop serving a request (the client went away); its callbacks will not run.

        A waiting request leaves at once; a running one frees its resources at the end of the current step.
        """
        if request.done or request.aborted:
            return
        request.aborted = True
        if request in self.waiting:
            self.waiting.remove(request)
            request.finished_at = self.clock.now()
            if request.adapter is not None:
                _count(self._waiting_adapters, request.adapter, -1)
                self._touch_lora_info()
        elif self._span is not None and not self._advancing:
            self._end_span_at_next_step(self.clock.now())

    def close(self) -> None:
        """Abort every request and stop the engine's timer (the server is shutting down)."""
        if self.kv_events is not None:
            self.kv_events.close()
            self.kv_events = None
        for timer in (self._wakeup, self._span.timer if self._span is not None else None):
            if timer is not None:
                timer.cancel()
        self._span = self._wakeup = None
        now = self.clock.now()
        for request in self.running:
            request.aborted = True
            self._retire(request, now)
        for request in self.waiting:
            request.aborted = True
            request.finished_at = now
        self.waiting.clear()
        self.running.clear()
        self._waiting_adapters.clear()

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Whether nothing is waiting or running."""
        return not self.waiting and not self.running

    def gauges(self) -> Gauges:
        """Return the current queue, batch, KV-cache and LoRA state."""
        return Gauges(
            waiting=len(self.waiting),
            running=len(self.running),
            kv_cache_usage=self.kv.usage(),
            running_adapters=tuple(sorted(self._running_adapters)),
            waiting_adapters=tuple(sorted(self._waiting_adapters)),
        )

    def first_token_forecast(self, prompt: Prompt, output_tokens: int, model: str | None = None) -> float:
        """The clock time at which the first token of a request submitted now would come if nothing arrived after
        it: the engine's steps replayed on copies of its batch and queue (admission order, token budget, sequence
        slots, prefix blocks cached now or by the requests admitted before it). Not replayed: running out of KV
        blocks, and LoRA slots (an adapter not in the batch costs one `lora_load` in the request's first step)."""
        config = self.config
        block_size = config.block_size
        adapter = self.resolve(model)
        # [prefill tokens left, output tokens, target tokens] of each request in the batch
        entries = {id(r): [r.prefill_left, r.output_tokens, r.target_tokens] for r in self.running if not r.aborted}
        now = self.clock.now()
        span = self._span
        if span is not None:  # finish the step under way (as submit would cut a decode span at a free slot)
            steps = span.steps
            if len(self.running) < config.max_num_seqs and steps > 1 and span.step_time > 0:
                steps = min(steps, max(1, math.ceil((now - span.start) / span.step_time - 1e-9)))
            now = span.start + steps * span.step_time
            for request in span.decoders:
                if id(request) in entries:
                    entries[id(request)][1] += steps
            for request, take in span.prefill:
                entry = entries.get(id(request))
                if entry is not None:
                    entry[0] -= take
                    entry[1] = 0 if entry[0] else 1
        running = [entry for entry in entries.values() if entry[1] < entry[2]]
        namespace = adapter or config.model
        hashes = prompt.block_hashes(block_size, namespace) if config.prefix_caching else ()
        queue = deque((r.prompt_tokens, r.block_hashes, r.target_tokens, r.remote_prefilled) for r in self.waiting)
        queue.append((prompt.num_tokens, hashes, output_tokens, False))
        mine = [0, 0, 0]  # the new request's entry, once admitted
        stored: set[int] = set()  # blocks the requests admitted in the replay cache
        load = config.lora_load if adapter is not None and adapter not in self._running_adapters else 0.0
        while True:
            budget = config.max_num_batched_tokens
            decoders = [entry for entry in running if not entry[0]]
            budget -= len(decoders)
            takes: list[tuple[list[int], int]] = []
            for entry in running:
                if entry[0] and budget > 0:
                    takes.append((entry, min(entry[0], budget)))
                    budget -= takes[-1][1]
            while queue and budget > 0 and len(running) < config.max_num_seqs:
                tokens, blocks, target, remote = queue.popleft()
                cached = 0
                for block_hash in blocks[: (tokens - 1) // block_size]:
                    if block_hash not in self.kv and block_hash not in stored:
                        break
                    cached += 1
                stored.update(blocks)
                cached_tokens = max(cached * block_size, tokens - 1 if remote else 0)
                entry = [tokens - cached_tokens, 0, target]
                if not queue:
                    mine = entry
                running.append(entry)
                takes.append((entry, min(entry[0], budget)))
                budget -= takes[-1][1]
            step_time = config.decode_step_time(len(decoders)) if decoders else 0.0
            if takes:
                step_time += config.prefill_overhead + sum(take for _, take in takes) * config.prefill_per_token
                step_time += load if any(entry is mine for entry, _ in takes) else 0.0
                steps = 1
            else:
                steps = min(entry[2] - entry[1] for entry in decoders)
            now += steps * step_time
            for entry in decoders:
                entry[1] += steps
            for entry, take in takes:
                entry[0] -= take
                if not entry[0]:
                    entry[1] = 1
                    if entry is mine:
                        return now
            running = [entry for entry in running if entry[1] < entry[2]]

    def lora_info_series(self) -> list[tuple[str, str, float]]:
        """The `lora_requests_info` series, oldest first: (running adapters, waiting adapters, Unix time)."""
        return [(running, waiting, stamp) for (running, waiting), stamp in self._lora_info.items()]

    def gauge_samples(self) -> list[Sample]:
        """The samples of the gauge families a scrape of this server shows (waiting, running, KV usage,
        cache_config_info, lora_requests_info), under the engine's metric names."""
        return [sample for family in gauge_families(self) for sample in family.samples]

    # -- the engine loop -------------------------------------------------------------------------------------

    def _start_span(self, now: float) -> None:
        config = self.config
        budget = config.max_num_batched_tokens
        decoders = [request for request in self.running if not request.prefill_left]
        budget -= len(decoders)
        prefill: list[tuple[Request, int]] = []
        for request in self.running:
            if request.prefill_left and budget > 0:
                take = min(request.prefill_left, budget)
                prefill.append((request, take))
                budget -= take
        loads = self._admit(now, budget, prefill)
        self._touch_lora_info()
        if not decoders and not prefill:
            self._span = None
            return
        step_time = config.decode_step_time(len(decoders)) if decoders else 0.0
        if prefill:
            step_time += (
                config.prefill_overhead
                + sum(take for _, take in prefill) * config.prefill_per_token
                + loads * config.lora_load
            )
            steps = 1
        elif any(request.on_tokens is not None for request in decoders):
            steps = 1
        else:
            steps = min(request.target_tokens - request.output_tokens for request in decoders)
        span = _Span(now, step_time, steps, decoders, prefill)
        span.timer = self.clock.call_at(span.end, self._end_span)
        self._span = span

    def _admit(self, now: float, budget: int, prefill: list[tuple[Request, int]]) -> int:
        """Move waiting requests into the batch; returns how many adapters had to be loaded."""
        config, kv = self.config, self.kv
        loads = 0
        skipped: list[Request] = []
        while self.waiting and budget > 0 and len(self.running) < config.max_num_seqs:
            request = self.waiting[0]
            adapter = request.adapter
            if adapter is not None and not self.slots.can_run(adapter, self._running_adapters):
                skipped.append(self.waiting.popleft())
                continue
            hashes = request.block_hashes
            cached_blocks = kv.cached_prefix(hashes[: (request.prompt_tokens - 1) // config.block_size])
            new_blocks = [index for index, block_hash in enumerate(hashes) if block_hash not in kv]
            if not kv.allocate(hashes, request.total_blocks):
                break
            if self.kv_events is not None:
                self.kv_events.publish(self._cache_events(request, new_blocks))
            self._evicted.clear()
            self.waiting.popleft()
            request.admitted_at = now
            request.cached_tokens = cached_blocks * config.block_size
            if request.remote_prefilled:
                request.cached_tokens = max(request.cached_tokens, request.prompt_tokens - 1)
            request.prefill_left = request.prompt_tokens - request.cached_tokens
            self.stats.on_admit(request)
            if adapter is not None:
                _count(self._waiting_adapters, adapter, -1)
                loads += self.slots.activate(adapter, self._running_adapters)
                _count(self._running_adapters, adapter, +1)
            self.running.append(request)
            take = min(request.prefill_left, budget)
            prefill.append((request, take))
            budget -= take
        self.waiting.extendleft(reversed(skipped))
        return loads

    def _wake(self) -> None:
        """The engine is idle and work arrived: start a step once every arrival of this instant is queued."""
        if self._wakeup is None:
            self._wakeup = self.clock.call_at(self.clock.now(), self._on_wakeup)

    def _on_wakeup(self) -> None:
        self._wakeup = None
        if self._span is None:
            self._start_span(self.clock.now())

    def _end_span_at_next_step(self, now: float) -> None:
        """The batch is about to change (a newcomer could join, a request left): stop the span at the next step."""
        span = self._span
        if span is None or span.steps <= 1 or span.step_time <= 0:
            return
        steps_done = max(1, math.ceil((now - span.start) / span.step_time - 1e-9))
        if steps_done >= span.steps:
            return
        if span.timer is not None:
            span.timer.cancel()
        span.steps = steps_done
        span.timer = self.clock.call_at(span.end, self._end_span)

    def _end_span(self) -> None:
        span, now = self._span, self.clock.now()
        if span is None:  # the timer of a span that close() dropped
            return
        steps, gap = span.steps, span.step_time
        for request in span.decoders:
            request.output_tokens += steps
            request.record_gaps(gap, steps)
        first_tokens = []
        for request, take in span.prefill:
            request.prefill_left -= take
            if not request.prefill_left:
                request.output_tokens = 1
                request.first_token_at = now
                first_tokens.append(request)
        self.stats.on_span(len(span.decoders) * steps, gap, first_tokens)
        finished = [r for r in self.running if r.aborted or r.output_tokens >= r.target_tokens]
        for request in finished:
            self._retire(request, now)
        if finished:
            self.running = [r for r in self.running if r.finished_at is None]
        self._advancing = True
        try:
            error = self._notify(span.decoders + first_tokens)
        finally:
            self._advancing = False
        self._start_span(now)
        if error is not None:
            raise error

    def _cache_events(self, request: Request, new_blocks: list[int]) -> list[Event]:
        """vLLM's KV events for one admission: the blocks it evicted, then the runs of blocks it newly cached."""
        events = [block_removed(self._evicted)] if self._evicted else []
        size, hashes, token_ids = self.config.block_size, request.block_hashes, request.token_ids
        if len(token_ids) < len(hashes) * size:
            return events  # a prompt without token ids (no tokenizer) has no BlockStored to tell
        lora_id = self._lora_ids.get(request.adapter) if request.adapter else None
        runs: list[list[int]] = []
        for index in new_blocks:
            if runs and runs[-1][-1] == index - 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        for run in runs:
            first, last = run[0], run[-1] + 1
            events.append(
                block_stored(
                    hashes[first:last],
                    hashes[first - 1] if first else None,
                    token_ids[first * size : last * size],
                    size,
                    lora_id,
                    request.adapter,
                )
            )
        return events

    def _retire(self, request: Request, now: float) -> None:
        self.kv.release(request.block_hashes, request.total_blocks)
        if request.adapter is not None:
            _count(self._running_adapters, request.adapter, -1)
        request.finished_at = now
        if not request.aborted:
            self.stats.on_finish(request)

    def _notify(self, requests: list[Request]) -> BaseException | None:
        """Run the callbacks of requests that made progress; returns the first exception a callback raised."""
        error = None
        for request in requests:
            if request.aborted:
                continue
            callback = request.on_finish if request.done else request.on_tokens
            if callback is None:
                continue
            try:
                callback(request)
            except Exception as exc:  # the engine must go on for every other request
                log.exception("request callback failed", extra={"server": self.name, "request": request.id})
                error = error or exc
        return error

    def _touch_lora_info(self) -> None:
        """Stamp the current (running, waiting) adapter sets with the time, as vLLM does at every step.

        A later state always gets a larger value, even within one instant, so that the newest series is the
        current state.
        """
        if self.config.max_loras == 0:
            return
        key = (",".join(sorted(self._running_adapters)), ",".join(sorted(self._waiting_adapters)))
        info = self._lora_info
        stamp = self.clock.timestamp()
        if info:
            newest_key, newest = next(reversed(info.items()))
            if newest_key != key:
                stamp = max(stamp, newest + 1e-6)
        info.pop(key, None)
        info[key] = stamp
        if len(info) > _LORA_INFO_SERIES:
            del info[next(iter(info))]


def _count(counts: dict[str, int], key: str, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value:
        counts[key] = value
    else:
        del counts[key]
