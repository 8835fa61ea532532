"""`predicted-ttft-scorer`: prefers the endpoint with the lowest predicted time to first token (poolgate's default).

For each candidate the scorer predicts, in seconds,

    ttft = baseSeconds
         + queueSecondsPerRequest   x queued      (scraped waiting + picker-dispatched requests the scrape missed)
         + runningSecondsPerRequest x running     (batch interference; when nothing waits, missed dispatches run)
         + prefillSecondsPerToken   x uncached prompt tokens  (prompt tokens - prefix-index matched tokens)
         + kvPressureSeconds x max(0, (kv - kvKnee) / (1 - kvKnee))       (a nearly full KV cache queues/evicts)
         + kvFullSeconds when the uncached prompt needs more KV blocks than are free
         + loraLoadSeconds when a requested LoRA adapter must be loaded (waiting, or a free slot),
           loraUnavailableSeconds when it is not loaded and there is no free slot

and scores it best_ttft / ttft (1.0 for the best endpoint, lower for slower ones). A request is a LoRA request
when `base_model` says so or some endpoint of the pool has reported the model among its adapters.

The four linear coefficients start from the parameters and, with `learnOnline: true`, follow the TTFTs the
server observes: recursive least squares on the primary's features at pick time, with exponential forgetting
(`forgetting`, 0.999 = observations fade over ~1,000 requests); predictions use the coefficients clipped at 0.
Prompt tokens are estimated from the hashed prompt bytes at 4 characters per token.
"""

from __future__ import annotations

from typing import Sequence

from picker.pool.state import Endpoint
from picker.scheduling.framework import CycleState, Decision, Scorer
from picker.scheduling.prefix import PrefixIndex
from picker.scheduling.request import CHARS_PER_TOKEN

TOKENS_SCALE = 1000.0  # the prefill feature is in thousands of tokens, to keep the features of similar size
INITIAL_COVARIANCE = 100.0  # RLS prior: loose, so that a few observations move the parameters
MAX_COVARIANCE_TRACE = 1e6


class PredictedTtftScorer(Scorer):
    """Scores endpoints by the inverse of their predicted time to first token (see the module docstring)."""

    type_name = "predicted-ttft-scorer"

    def __init__(self, name: str = "", *, index: PrefixIndex, base_seconds: float = 0.01,
                 queue_seconds_per_request: float = 0.1, running_seconds_per_request: float = 0.002,
                 prefill_seconds_per_token: float = 0.0002, kv_knee: float = 0.8, kv_pressure_seconds: float = 1.0,
                 kv_full_seconds: float = 2.0, lora_load_seconds: float = 0.2,
                 lora_unavailable_seconds: float = 5.0, learn_online: bool = False,
                 forgetting: float = 0.999) -> None:
        super().__init__(name)
        values = (base_seconds, queue_seconds_per_request, running_seconds_per_request, prefill_seconds_per_token,
                  kv_pressure_seconds, kv_full_seconds, lora_load_seconds, lora_unavailable_seconds)
        if min(values) < 0:
            raise ValueError("predicted-ttft-scorer times must not be negative")
        if not 0.0 <= kv_knee < 1.0 or not 0.0 < forgetting <= 1.0:
            raise ValueError("kvKnee must be within [0, 1) and forgetting within (0, 1]")
        self.index = index
        # coefficients of the features (1, queued, running, uncached kilo-tokens)
        self._estimate = [base_seconds, queue_seconds_per_request, running_seconds_per_request,
                          prefill_seconds_per_token * TOKENS_SCALE]
        self.coefficients = list(self._estimate)  # what predictions use: the estimate clipped at 0
        self._covariance = _identity(len(self._estimate), INITIAL_COVARIANCE)
        self.kv_knee = kv_knee
        self.kv_pressure_seconds = kv_pressure_seconds
        self.kv_full_seconds = kv_full_seconds
        self.lora_load_seconds = lora_load_seconds
        self.lora_unavailable_seconds = lora_unavailable_seconds
        self.learn_online = learn_online
        self.forgetting = forgetting

    def prefix_indexes(self) -> tuple[PrefixIndex, ...]:
        return (self.index,)

    def predict(self, cycle: CycleState, endpoints: Sequence[Endpoint],
                details: list[tuple[tuple[float, ...], float]] | None = None) -> list[float]:
        """Predicted TTFT of each candidate, in seconds; fills `details` (if given) with each candidate's
        (linear features, fixed seconds)."""
        request = cycle.request
        model = request.target_model
        match = cycle.prefix_match(self.index, endpoints)
        matched = match.matched
        tokens_per_block = match.block_bytes / CHARS_PER_TOKEN
        prompt_tokens = request.prompt.estimated_tokens
        is_lora = (request.base_model is not None and request.base_model != model) or \
            model in cycle.pool.known_adapters
        base, per_queued, per_running, per_kilo_token = self.coefficients
        per_token = per_kilo_token / TOKENS_SCALE
        knee = self.kv_knee
        pressure = self.kv_pressure_seconds / (1.0 - knee)
        ttfts = []
        for e in endpoints:
            m = e.metrics
            if m.waiting > 0:
                queued, running = m.waiting + e.unreflected, m.running
            else:
                queued, running = 0, m.running + e.unreflected
            uncached = prompt_tokens - matched.get(e.key, 0) * tokens_per_block
            if uncached < 0.0:
                uncached = 0.0
            fixed = 0.0
            kv = m.kv_usage
            if kv > knee:
                fixed = pressure * (kv - knee)
            if m.num_gpu_blocks and m.block_size and uncached / m.block_size > (1.0 - kv) * m.num_gpu_blocks:
                fixed += self.kv_full_seconds
            if is_lora and model not in m.running_adapters:
                room = len(m.running_adapters) + len(m.waiting_adapters) < m.max_lora
                fixed += self.lora_load_seconds if (room or model in m.waiting_adapters) \
                    else self.lora_unavailable_seconds
            ttfts.append(base + per_queued * queued + per_running * running + per_token * uncached + fixed)
            if details is not None:
                details.append(((1.0, float(queued), float(running), uncached / TOKENS_SCALE), fixed))
        return ttfts

    def score(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> list[float]:
        details: list[tuple[tuple[float, ...], float]] | None = [] if self.learn_online else None
        ttfts = self.predict(cycle, endpoints, details)
        if details is not None:
            cycle.data[self.name] = {e.key: detail for e, detail in zip(endpoints, details)}
        best = min(ttfts)
        if best <= 0.0:  # all coefficients zero: no preference
            return [1.0] * len(ttfts)
        return [best / ttft for ttft in ttfts]

    def after_pick(self, cycle: CycleState, decision: Decision) -> None:
        predictions = cycle.data.pop(self.name, None)
        if predictions is not None and decision.primary in predictions:
            cycle.data[self.name] = predictions[decision.primary]

    def on_first_token(self, decision: Decision, ttft: float) -> None:
        """Update the coefficients with the observed TTFT of a request served by its primary endpoint."""
        if decision.cycle is None or decision.served not in (None, decision.primary):
            return
        detail = decision.cycle.data.get(self.name)
        if detail is None:
            return
        features, fixed = detail
        self._learn(features, ttft - fixed)

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
