"""Pool saturation, which decides when sheddable requests (priority < 0) are refused with 429.

The reference rule (`utilization-detector`): saturation is the mean over the pool's endpoints of
max(waiting / queueDepthThreshold, kv_usage / kvCacheUtilThreshold), where an endpoint whose metrics are older
than `metricsStalenessThreshold` (or were never scraped) counts 1.0; an empty pool is saturated. The pool is
saturated at >= 1.0. Requests with priority >= 0 are never shed.

Any object with `saturation(endpoints, now) -> float` can replace the detector (`Scheduler(saturation=...)`).
Listed in a scheduling profile, the detector also filters: it keeps fresh endpoints below
threshold x (1 + headroom) on both signals, or every candidate if none is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import Field

from picker.pool.state import Endpoint
from picker.scheduling.framework import CycleState, Filter
from picker.scheduling.registry import BuildContext, Duration, PluginParameters, plugin


def mean_utilization(
    endpoints: Sequence[Endpoint], queue_threshold: float, kv_threshold: float, oldest: float | None = None
) -> float:
    """The mean over the endpoints of max(waiting / queue_threshold, KV usage / kv_threshold), an endpoint never
    scraped (or last scraped before `oldest`) counting 1.0; 1.0 for no endpoint."""
    if not endpoints:
        return 1.0
    total = 0.0
    for endpoint in endpoints:
        m = endpoint.metrics
        if m.updated_at is None or (oldest is not None and m.updated_at < oldest):
            total += 1.0
        else:
            total += max(m.waiting / queue_threshold, m.kv_usage / kv_threshold)
    return total / len(endpoints)


@runtime_checkable
class SaturationDetector(Protocol):
    """What the scheduler asks before admitting a sheddable request."""

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float: ...


@plugin("utilization-detector")
class UtilizationDetector(Filter):
    """The reference saturation detector (see the module docstring); also the config's `saturationDetector`."""

    class Parameters(PluginParameters):
        queueDepthThreshold: float = Field(default=5, gt=0)
        kvCacheUtilThreshold: float = Field(default=0.8, gt=0)
        metricsStalenessThreshold: Duration = 0.2
        headroom: float = Field(default=0.0, ge=0)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> UtilizationDetector:
        return cls(
            name,
            queue_depth_threshold=parameters.queueDepthThreshold,
            kv_cache_util_threshold=parameters.kvCacheUtilThreshold,
            metrics_staleness_threshold=parameters.metricsStalenessThreshold,
            headroom=parameters.headroom,
        )

    def __init__(
        self,
        name: str = "",
        *,
        queue_depth_threshold: float = 5,
        kv_cache_util_threshold: float = 0.8,
        metrics_staleness_threshold: float = 0.2,
        headroom: float = 0.0,
    ) -> None:
        super().__init__(name)
        if queue_depth_threshold <= 0 or kv_cache_util_threshold <= 0 or metrics_staleness_threshold <= 0:
            raise ValueError("saturation thresholds must be positive")
        if headroom < 0:
            raise ValueError("headroom must not be negative")
        self.queue_depth_threshold = queue_depth_threshold
        self.kv_cache_util_threshold = kv_cache_util_threshold
        self.metrics_staleness_threshold = metrics_staleness_threshold
        self.headroom = headroom

    def saturation(self, endpoints: Sequence[Endpoint], now: float) -> float:
        """Return the pool saturation (>= 1.0 means saturated)."""
        return mean_utilization(
            endpoints, self.queue_depth_threshold, self.kv_cache_util_threshold, now - self.metrics_staleness_threshold
        )

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        oldest = cycle.now - self.metrics_staleness_threshold
        queue_limit = self.queue_depth_threshold * (1.0 + self.headroom)
        kv_limit = self.kv_cache_util_threshold * (1.0 + self.headroom)
        kept = [
            e
            for e in endpoints
            if e.metrics.updated_at is not None
            and e.metrics.updated_at >= oldest
            and e.metrics.waiting < queue_limit
            and e.metrics.kv_usage < kv_limit
        ]
        return kept if kept else endpoints
