"""`predicted-ttft-scorer`: prefers the endpoint with the lowest predicted time to first token, counting what the
choice costs the requests after it (poolgate's default).

For each candidate the scorer predicts, in seconds,

    ttft = baseSeconds
         + runningSecondsPerRequest x running       (decode steps of a bigger batch take longer)
         + prefillSecondsPerToken x uncached        (the prompt tokens the endpoint must compute)
         + max(backlogWeight x prefill backlog, slot wait)
         + kvPressureSeconds x max(0, (kv - kvKnee) / (1 - kvKnee))       (a nearly full KV cache queues/evicts)
         + kvFullSeconds when the uncached prompt needs more KV blocks than are free
         + loraLoadSeconds when a requested LoRA adapter must be loaded (waiting, or a free slot),
           loraUnavailableSeconds when it is not loaded and there is no free slot

- `uncached`: prompt tokens - the tokens of the prompt's leading blocks the prefix-match producer credits to the
  endpoint (`prefixMatchInfoProducerName`, as for `prefix-cache-scorer`; default the approximate prefix index;
  prompt tokens are estimated from the hashed prompt bytes at 4 characters per token);
- prefill backlog: the prefill work this picker (and its peer replicas, see below) sent to the endpoint that is not
  done yet — each pick adds its predicted prefill time, the backlog drains at one second per second, and a
  request's first token proves that at most the work sent after it is left;
- `backlogWeight` (1 by default): what a second of that backlog delays the first token by. An engine works through
  queued prompts slower than one second per second (a step's overhead and the running requests' decode steps sit
  between the prefill chunks, and an arrival waits for the step under way to end); the routing benchmark measured
  ~1.5 (docs/benchmarks.md). It is a fixed weight, not learned: the learned coefficients are fitted to the TTFT
  minus this wait;
- occupancy: the endpoint's requests = scraped running + scraped waiting + requests sent since the scrape
  (`unreflected`) - requests sent before the scrape that have ended since (the scrape lags both ways);
- slot wait: an engine runs at most `max_num_seqs` requests, which vLLM does not export. The scorer takes the most
  requests any endpoint of the pool was seen running (the pool's peak: once one endpoint has been full, the
  engines' limit). An endpoint is full when requests wait there and its occupancy reaches the peak (requests
  waiting beside a shorter batch are only an engine step from joining it). Then `queued` = occupancy - peak and
  the request waits until `queued + 1` requests have ended, one every `slot seconds / peak`; slot seconds is how
  long a request holds its place in the batch (first token to end, plus its predicted prefill), an exponential
  average over the picker's own completed requests (`slotSecondsSmoothing` per request), `slotSeconds` until one
  completes. Otherwise `queued` = 0 and `running` = occupancy.

Endpoints are then ranked by a cost, the predicted TTFT plus what the request's prefill costs the requests after it:

    cost = ttft + prefill x (prefillPenalty + running / peak x busy / (1 - busy)
                             [+ arrivals x (backlog + prefill / 2) / (1 - prefill load)   with prefillQueueCost])

where prefill = prefillSecondsPerToken x uncached, prefillPenalty a flat extra price on cache misses (0 by default:
1.0 measured worse in the routing benchmark) and busy is the pool's utilization (the mean over the candidates
of (running + queued) / peak, at most 0.95). A prefill stretches the engine steps of the running requests, whose
places in the batch then free later (requests already queued are admitted before it and are not delayed); how much
that delays the requests that come next grows like busy / (1 - busy) as the pool fills. So a request follows its
cached prefix unless the cache's endpoint is clearly the slower choice, and spills over to an uncached endpoint
readily when the pool has room, reluctantly when it is busy (a cache miss then costs capacity the pool does not
have).

The last term (`prefillQueueCost: true`; off by default) is the queue a prefill builds in front of the endpoint's
next requests, which matters when prompts, not outputs, fill the servers' time (long shared prompts, short
answers): batch slots then stay free while the engine is busy computing prompts, and `busy` sees an idle pool, so
nothing else in the cost rises with the prompt load. The endpoint's next prefills wait for this one:
requests keep arriving at `arrivals` per second (the rate at which this picker sends them there) during the
endpoint's busy period, which this prefill lengthens by prefill / (1 - prefill load), and each waits up to
`prefill` longer. `prefill load` is the endpoint's share of time computing prompts (the predicted prefill seconds
sent there per second, at most 0.95); both rates are exponential averages over `loadWindowSeconds` (30 s). A cache
miss (a 6,000-token prompt is 1.5 s of prefill) on an endpoint already 80% busy with prompts then costs the
requests after it several times its own TTFT, so a prompt group stays on the endpoint that caches it, and moves
(is computed once more elsewhere) when that endpoint's share of the work is clearly above the others'. It is off by
default because the routing benchmark measured it worse: it also stops the few second copies of a busy group that
let later requests of the group choose between two servers (see docs/benchmarks.md).
`spreadCopies: N` (0, off, by default for the plugin; 2 in `poolgate-default`) makes copies of a shared prompt
while its endpoint is busy: when the longest prefix any candidate caches is cached on fewer than N candidates and is
shared, not continued (it holds no earlier request's whole prompt, as a conversation's next turn holds its last
turn's: a system prompt), every endpoint caching it has something ahead of the request (a prefill backlog, a slot
wait: `Prediction.fixed` > 0), and the copy's extra prefill is at most `spreadMaxSeconds` (0.5 s), every candidate is
ranked as a copy would be (the holders' cached tokens do not count in the cost; the prediction and the backlog keep
them). The request then goes where a copy costs least, often an endpoint without the prefix, and the group's later
requests choose between N endpoints by their backlogs. With short shared prompts, where requests wait behind other
requests' prefill rather than for batch slots, a hit waits less often when its group has two endpoints to choose
from; each copy is one request's extra prefill, made once. A copy also takes cache room the scorer cannot see (vLLM's
KV usage counts running requests, not cached blocks), so none is made while a holder is idle: then it buys nothing,
and on a small cache copies would evict each other. In the routing benchmark, with 1,500-token shared prompts, it
lowered p90 at 13 of 15 shape-seeds (by up to 33%; level at one, 5% higher at one). The 6,000-token shapes were
unchanged (their copies exceed the limit) and the other workloads stayed within 0.96-1.03x (docs/benchmarks.md).

The score is best_cost / cost (1.0 for the best endpoint).

A request is a LoRA request when `base_model` says so or some endpoint of the pool has reported the model among
its adapters.

With several picker replicas for a pool, the requests the peers announce (`picker.scheduling.loadbook`) count in
the backlog and the occupancy as the picker's own do: a peer's pick adds the uncached tokens the peer predicted
(priced with this replica's coefficient), its first token and end arrive as announcements.

The three linear coefficients (base, per running request, per 1,000 uncached tokens) start from the parameters
and, with `learnOnline: true`, follow the TTFTs the server observes: recursive least squares on the primary's
features at pick time, with exponential forgetting (`forgetting`, 0.999 = observations fade over ~1,000
requests); predictions use the coefficients clipped at 0.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from picker.pool.state import Endpoint, PoolState
from picker.scheduling.framework import CycleState, Decision, PeerPick, Plugin, Scorer
from picker.scheduling.prefix import PrefixMatchProducer, prefix_match_producer
from picker.scheduling.registry import BuildContext, PluginParameters, Seconds, plugin

TOKENS_SCALE = 1000.0  # the prefill feature is in thousands of tokens, to keep the features of similar size
INITIAL_COVARIANCE = 100.0  # RLS prior: loose, so that a few observations move the parameters
MAX_COVARIANCE_TRACE = 1e6
MAX_TRACKED_PROMPTS = 10_000  # recent prompts whose ends `spreadCopies` remembers (least recent dropped)
MAX_UTILIZATION = 0.95  # caps the pool utilization in the capacity cost (busy / (1 - busy) <= 19)


@dataclass(slots=True)
class Prediction:
    """What one candidate's predicted TTFT is made of."""

    running: float  # requests in the batch (scraped, plus those sent since the scrape while a slot is free)
    queued: float  # requests waiting for a slot (scraped waiting + sent since the scrape, when the batch is full)
    uncached: float  # the request's own uncached prompt tokens on this endpoint
    fixed: float  # seconds: prefill backlog or slot wait, KV and LoRA terms

    @property
    def features(self) -> tuple[float, float, float]:
        """The features of the learned linear part: (1, running, uncached kilo-tokens)."""
        return 1.0, self.running, self.uncached / TOKENS_SCALE


@dataclass(slots=True)
class _Backlog:
    """An endpoint's prefill work still to do, as the picker estimates it: seconds at `updated_at`, draining at
    one second per second, and the total work ever sent there; and the rates at which work and requests are sent
    there (exponential averages, as of `rated_at`)."""

    seconds: float = 0.0
    updated_at: float = 0.0
    sent: float = 0.0
    work_rate: float = 0.0  # prefill seconds per second: the endpoint's prefill load
    request_rate: float = 0.0  # requests per second
    rated_at: float = 0.0

    def at(self, now: float) -> float:
        """The work left at `now`."""
        left = self.seconds - max(0.0, now - self.updated_at)
        return left if left > 0.0 else 0.0

    def rates(self, now: float, window: float) -> tuple[float, float]:
        """(prefill load, requests per second) at `now`, averaged over about `window` seconds."""
        decay = math.exp(-max(0.0, now - self.rated_at) / window)
        return self.work_rate * decay, self.request_rate * decay

    def add(self, now: float, work: float, window: float) -> None:
        """Send one request with `work` seconds of prefill."""
        self.seconds = self.at(now) + work
        self.updated_at = now
        self.sent += work
        work_rate, request_rate = self.rates(now, window)
        self.work_rate = work_rate + work / window
        self.request_rate = request_rate + 1.0 / window
        self.rated_at = now


@dataclass(slots=True)
class _Booking:
    """What the scorer remembers of a request it scored, until its first token."""

    endpoint: str
    prediction: Prediction
    sent_after: float  # the endpoint's `sent` total once this request's prefill was added


@plugin("predicted-ttft-scorer")
class PredictedTtftScorer(Scorer):
    """Scores endpoints by the inverse of their predicted time to first token (see the module docstring)."""

    class Parameters(PluginParameters):
        baseSeconds: Seconds = 0.02
        runningSecondsPerRequest: Seconds = 0.001
        prefillSecondsPerToken: Seconds = 0.0002
        slotSeconds: Seconds = 10.0
        slotSecondsSmoothing: float = Field(default=0.02, ge=0, le=1)
        kvKnee: float = Field(default=0.8, ge=0, lt=1)
        kvPressureSeconds: Seconds = 1.0
        kvFullSeconds: Seconds = 2.0
        loraLoadSeconds: Seconds = 0.2
        loraUnavailableSeconds: Seconds = 5.0
        prefillPenalty: float = Field(default=0.0, ge=0)
        prefillQueueCost: bool = False
        backlogWeight: float = Field(default=1.0, ge=1)
        loadWindowSeconds: float = Field(default=30.0, gt=0)
        spreadCopies: int = Field(default=0, ge=0)
        spreadMaxSeconds: Seconds = 0.5
        learnOnline: bool = False
        forgetting: float = Field(default=0.999, gt=0, le=1)
        prefixMatchInfoProducerName: str | None = Field(default=None, min_length=1)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> PredictedTtftScorer:
        p = parameters
        return cls(
            name,
            index=prefix_match_producer(context, p.prefixMatchInfoProducerName, name),
            base_seconds=p.baseSeconds,
            running_seconds_per_request=p.runningSecondsPerRequest,
            prefill_seconds_per_token=p.prefillSecondsPerToken,
            slot_seconds=p.slotSeconds,
            slot_seconds_smoothing=p.slotSecondsSmoothing,
            kv_knee=p.kvKnee,
            kv_pressure_seconds=p.kvPressureSeconds,
            kv_full_seconds=p.kvFullSeconds,
            lora_load_seconds=p.loraLoadSeconds,
            lora_unavailable_seconds=p.loraUnavailableSeconds,
            prefill_penalty=p.prefillPenalty,
            prefill_queue_cost=p.prefillQueueCost,
            backlog_weight=p.backlogWeight,
            load_window_seconds=p.loadWindowSeconds,
            spread_copies=p.spreadCopies,
            spread_max_seconds=p.spreadMaxSeconds,
            learn_online=p.learnOnline,
            forgetting=p.forgetting,
        )

    def __init__(
        self,
        name: str = "",
        *,
        index: PrefixMatchProducer,
        base_seconds: float = 0.02,
        running_seconds_per_request: float = 0.001,
        prefill_seconds_per_token: float = 0.0002,
        slot_seconds: float = 10.0,
        slot_seconds_smoothing: float = 0.02,
        kv_knee: float = 0.8,
        kv_pressure_seconds: float = 1.0,
        kv_full_seconds: float = 2.0,
        lora_load_seconds: float = 0.2,
        lora_unavailable_seconds: float = 5.0,
        prefill_penalty: float = 0.0,
        prefill_queue_cost: bool = False,
        backlog_weight: float = 1.0,
        load_window_seconds: float = 30.0,
        spread_copies: int = 0,
        spread_max_seconds: float = 0.5,
        learn_online: bool = False,
        forgetting: float = 0.999,
    ) -> None:
        super().__init__(name)
        values = (
            base_seconds,
            running_seconds_per_request,
            prefill_seconds_per_token,
            slot_seconds,
            kv_pressure_seconds,
            kv_full_seconds,
            lora_load_seconds,
            lora_unavailable_seconds,
            prefill_penalty,
        )
        if min(values) < 0:
            raise ValueError("predicted-ttft-scorer times must not be negative")
        if not 0.0 <= kv_knee < 1.0 or not 0.0 < forgetting <= 1.0 or not 0.0 <= slot_seconds_smoothing <= 1.0:
            raise ValueError(
                "kvKnee must be within [0, 1), forgetting within (0, 1] and slotSecondsSmoothing within [0, 1]"
            )
        if load_window_seconds <= 0:
            raise ValueError("loadWindowSeconds must be positive")
        if backlog_weight < 1.0:
            raise ValueError("backlogWeight must be at least 1")
        self.index = index
        # coefficients of the features (1, running, prefill kilo-tokens)
        self._estimate = [base_seconds, running_seconds_per_request, prefill_seconds_per_token * TOKENS_SCALE]
        self.coefficients = list(self._estimate)  # what predictions use: the estimate clipped at 0
        self._covariance = _identity(len(self._estimate), INITIAL_COVARIANCE)
        self.slot_seconds = slot_seconds
        self.slot_seconds_smoothing = slot_seconds_smoothing
        self.kv_knee = kv_knee
        self.kv_pressure_seconds = kv_pressure_seconds
        self.kv_full_seconds = kv_full_seconds
        self.lora_load_seconds = lora_load_seconds
        self.lora_unavailable_seconds = lora_unavailable_seconds
        self.prefill_penalty = prefill_penalty
        self.prefill_queue_cost = prefill_queue_cost
        self.backlog_weight = backlog_weight
        self.load_window_seconds = load_window_seconds
        self.spread_copies = spread_copies
        self.spread_max_seconds = spread_max_seconds
        self.learn_online = learn_online
        self.forgetting = forgetting
        self.backlogs: dict[str, _Backlog] = {}  # endpoint key -> its prefill backlog
        # endpoint key -> end times of requests sent before a scrape and ended since (newest last)
        self.ended: dict[str, deque[float]] = {}
        self.prompt_ends: dict[int, None] = {}  # the last block hash of recent prompts (oldest first)
        self.peak_running = 0  # the most requests any endpoint of the pool has been seen running
        self.pool: PoolState | None = None  # the pool of the scheduler running the scorer (`attach`)

    def shared_plugins(self) -> tuple[Plugin, ...]:
        return (self.index,) if isinstance(self.index, Plugin) else ()

    def predict(
        self, cycle: CycleState, endpoints: Sequence[Endpoint], details: list[Prediction] | None = None
    ) -> list[float]:
        """Predicted TTFT of each candidate, in seconds; fills `details` (if given) with each candidate's parts."""
        request = cycle.request
        model = request.target_model
        match = self.index.cycle_match(cycle, endpoints)
        matched = match.matched
        tokens_per_block = float(match.block_tokens)
        prompt_tokens = request.prompt.estimated_tokens
        is_lora = (request.base_model is not None and request.base_model != model) or model in cycle.pool.known_adapters
        base, per_running, per_kilo_token = self.coefficients
        per_token = per_kilo_token / TOKENS_SCALE
        knee = self.kv_knee
        pressure = self.kv_pressure_seconds / (1.0 - knee)
        backlogs, backlog_weight = self.backlogs, self.backlog_weight
        now = cycle.now
        peak = self.peak_running
        for e in endpoints:
            if e.metrics.running > peak:
                peak = e.metrics.running
        self.peak_running = peak
        ttfts = []
        for e in endpoints:
            m = e.metrics
            key = e.key
            uncached = prompt_tokens - matched.get(key, 0) * tokens_per_block
            if uncached < 0.0:
                uncached = 0.0
            backlog = backlogs.get(key)
            fixed = backlog.at(now) * backlog_weight if backlog is not None else 0.0
            occupancy = max(0, m.running + m.waiting + e.unreflected - self._ended_since_scrape(key, m.updated_at))
            if m.waiting > 0 and 0 < peak <= occupancy:  # full: wait until queued + 1 requests have ended
                running = peak
                queued = occupancy - peak
                slot_wait = (queued + 1) * self.slot_seconds / peak
                if slot_wait > fixed:
                    fixed = slot_wait
            else:  # a free slot (requests waiting for fewer than peak running are a step boundary away)
                running = occupancy
                queued = 0
            kv = m.kv_usage
            if kv > knee:
                fixed += pressure * (kv - knee)
            if m.num_gpu_blocks and m.block_size and uncached / m.block_size > (1.0 - kv) * m.num_gpu_blocks:
                fixed += self.kv_full_seconds
            if is_lora and model not in m.running_adapters:
                room = len(m.running_adapters) + len(m.waiting_adapters) < m.max_lora
                fixed += (
                    self.lora_load_seconds if (room or model in m.waiting_adapters) else self.lora_unavailable_seconds
                )
            ttfts.append(base + per_running * running + per_token * uncached + fixed)
            if details is not None:
                details.append(Prediction(float(running), float(queued), uncached, fixed))
        return ttfts

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        details: list[Prediction] = []
        costs = self.predict(cycle, endpoints, details)
        cycle.data[self.name] = {e.key: detail for e, detail in zip(endpoints, details)}
        per_token = self.coefficients[2] / TOKENS_SCALE
        peak = self.peak_running or 1
        busy = sum(min(1.0, (d.running + d.queued) / peak) for d in details) / len(details)
        busy = min(busy, MAX_UTILIZATION)
        per_running = busy / (1.0 - busy) / peak
        penalty = self.prefill_penalty
        now, window, backlogs = cycle.now, self.load_window_seconds, self.backlogs
        spread_to = self._spread_uncached(cycle, endpoints, details, per_token)
        for i, (e, d) in enumerate(zip(endpoints, details)):
            uncached = d.uncached if spread_to is None else spread_to
            if uncached > d.uncached:  # ranked as a copy would be
                costs[i] += per_token * (uncached - d.uncached)
            prefill = per_token * uncached
            if prefill <= 0.0:
                continue
            price = penalty + per_running * d.running
            backlog = backlogs.get(e.key) if self.prefill_queue_cost else None
            if backlog is not None:
                load, arrivals = backlog.rates(now, window)
                price += arrivals * (backlog.at(now) + prefill / 2) / (1.0 - min(load, MAX_UTILIZATION))
            costs[i] += prefill * price
        best = min(costs)
        if best <= 0.0:  # all coefficients zero: no preference
            return [1.0] * len(costs)
        return [best / cost for cost in costs]

    def _spread_uncached(
        self, cycle: CycleState, endpoints: Sequence[Endpoint], details: Sequence[Prediction], per_token: float
    ) -> float | None:
        """The uncached tokens every candidate is ranked at when `spreadCopies` copies this request's shared prefix
        (the most any candidate must compute), or None: each candidate ranked on its own."""
        if self.spread_copies < 2 or not self._shared_prefix(cycle, endpoints):
            return None
        least, most = min(d.uncached for d in details), max(d.uncached for d in details)
        holders = [d for d in details if d.uncached == least]  # the candidates caching the longest prefix
        if len(holders) >= self.spread_copies or per_token * (most - least) > self.spread_max_seconds:
            return None
        if min(d.fixed for d in holders) <= 0.0:  # a holder has nothing ahead of this request: no need to copy
            return None
        return most

    def _shared_prefix(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> bool:
        """Whether the longest cached prefix of the request is shared rather than continued: it contains no earlier
        request's whole prompt (a conversation's next turn contains its last turn's; requests of a group share a
        system prompt and part at their questions). Remembers where this request's prompt ends (its last block
        but one)."""
        match = self.index.cycle_match(cycle, endpoints)
        if not match.hashes:
            return False
        longest = max(match.matched.values(), default=0)
        ends = self.prompt_ends
        shared = longest > 0 and not any(h in ends for h in match.hashes[:longest])
        last = match.hashes[-2:][0]  # the last block may be partial: the next turn's would differ
        ends.pop(last, None)
        ends[last] = None
        if len(ends) > MAX_TRACKED_PROMPTS:
            del ends[next(iter(ends))]
        return shared

    def attach(self, pool: PoolState) -> None:
        self.pool = pool  # where peers' requests are booked

    def after_pick(self, cycle: CycleState, decision: Decision) -> None:
        """Add the request's prefill to its endpoint's backlog; tell the decision how much prompt is uncached."""
        predictions = cycle.data.pop(self.name, None)
        primary = decision.primary
        if predictions is None or primary is None or primary not in predictions:
            return
        prediction = predictions[primary]
        decision.uncached_tokens = prediction.uncached
        sent_after = self._add_prefill(primary, prediction.uncached, cycle.now)
        cycle.data[self.name] = _Booking(primary, prediction, sent_after)

    def on_peer_pick(self, pick: PeerPick, now: float) -> None:
        """A peer replica's request adds its prefill to the endpoint's backlog, as this picker's own do."""
        pick.data[self.name] = self._add_prefill(pick.endpoint, 0.0 if pick.first_token else pick.uncached_tokens, now)

    def on_first_token(self, decision: Decision, ttft: float) -> None:
        """The request's prefill is done: at most what was sent after it is left; learn from its TTFT."""
        booking = self._booking(decision)
        if booking is None:
            return
        if decision.first_token_at is not None:
            self._prefill_done(booking.endpoint, booking.sent_after, decision.first_token_at)
        if self.learn_online and decision.served in (None, decision.primary):
            prediction = booking.prediction
            self._learn(prediction.features, ttft - prediction.fixed)

    def on_peer_first_token(self, pick: PeerPick, now: float) -> None:
        sent_after = pick.data.get(self.name)
        if sent_after is not None:
            self._prefill_done(pick.endpoint, sent_after, now)

    def on_complete(self, decision: Decision, now: float) -> None:
        """Note the end (the scraped counts still hold the request until the next scrape); measure how long the
        request held its sequence slot."""
        booking = self._booking(decision)
        if booking is None:
            return
        if decision.ticket is not None and decision.cycle is not None:
            self._note_end(decision.cycle.pool, booking.endpoint, decision.ticket.dispatched_at, now)
        if decision.first_token_at is None or not self.slot_seconds_smoothing:
            return
        prefill = booking.prediction.uncached * self.coefficients[2] / TOKENS_SCALE
        held = now - decision.first_token_at + prefill
        self.slot_seconds += self.slot_seconds_smoothing * (held - self.slot_seconds)

    def on_peer_complete(self, pick: PeerPick, now: float) -> None:
        if self.pool is not None:
            self._note_end(self.pool, pick.endpoint, pick.ticket.dispatched_at, now)

    def _add_prefill(self, key: str, uncached: float, now: float) -> float:
        """Send `uncached` prompt tokens' prefill to an endpoint; returns its `sent` total after them."""
        backlog = self.backlogs.get(key)
        if backlog is None:
            backlog = self.backlogs[key] = _Backlog()
        backlog.add(now, uncached * self.coefficients[2] / TOKENS_SCALE, self.load_window_seconds)
        return backlog.sent

    def _prefill_done(self, key: str, sent_after: float, now: float) -> None:
        """A request's prefill is done at `now`: at most the work sent after it is left."""
        backlog = self.backlogs.get(key)
        if backlog is not None:
            backlog.seconds = min(backlog.at(now), backlog.sent - sent_after)
            backlog.updated_at = now

    def _note_end(self, pool: PoolState, key: str, dispatched_at: float, now: float) -> None:
        """A request sent before the endpoint's last scrape ended: the scraped counts hold it until the next."""
        endpoint = pool.get(key)
        scraped_at = endpoint.metrics.updated_at if endpoint is not None else None
        if scraped_at is not None and dispatched_at < scraped_at:
            self.ended.setdefault(key, deque()).append(now)

    def endpoint_removed(self, key: str) -> None:
        self.backlogs.pop(key, None)
        self.ended.pop(key, None)

    def _ended_since_scrape(self, key: str, scraped_at: float | None) -> int:
        """How many requests the endpoint's last scrape still counts that have ended since."""
        ended = self.ended.get(key)
        if not ended:
            return 0
        while ended and (scraped_at is None or ended[0] <= scraped_at):
            ended.popleft()
        return len(ended)

    def _booking(self, decision: Decision) -> _Booking | None:
        booking = decision.cycle.data.get(self.name) if decision.cycle is not None else None
        return booking if isinstance(booking, _Booking) else None

    def _learn(self, x: tuple[float, ...], y: float) -> None:
        """One recursive-least-squares step towards y = estimate . x."""
        p, lam, n = self._covariance, self.forgetting, len(x)
        px = [sum(p[i][j] * x[j] for j in range(n)) for i in range(n)]
        gain_denominator = lam + sum(x[i] * px[i] for i in range(n))
        gain = [v / gain_denominator for v in px]
        error = y - sum(c * v for c, v in zip(self._estimate, x))
        self._estimate = [c + g * error for c, g in zip(self._estimate, gain)]
        self._covariance = [[(p[i][j] - gain[i] * px[j]) / lam for j in range(n)] for i in range(n)]
        if sum(self._covariance[i][i] for i in range(n)) > MAX_COVARIANCE_TRACE:  # no excitation: restart
            self._covariance = _identity(n, INITIAL_COVARIANCE)
        self.coefficients = [max(0.0, c) for c in self._estimate]


def _identity(n: int, scale: float) -> list[list[float]]:
    return [[scale if i == j else 0.0 for j in range(n)] for i in range(n)]
