"""Upstream plugin types for what poolgate does outside the scheduling profiles: data sources and extractors,
admission and test hooks (request parsers are `picker.scheduling.parsers`). Each is accepted where poolgate does the
same thing built in, and refused with a message naming the part where it would act differently.

- `metrics-data-source` (`scheme` http, `path` /metrics, `insecureSkipVerify`): the metrics scrape poolgate always
  runs (every `--refresh-metrics-interval`); another scheme or path is refused.
- `core-metrics-extractor` (`engineLabelKey`, `defaultEngine`): reads queue, running, KV usage, LoRA and cache
  config metrics by engine; poolgate's engine label is `llm-d.ai/engine-type` and its engines are built in
  (`engineConfigs` with custom metric names is refused).
- `models-data-source` (`scheme` http, `path` /v1/models, `insecureSkipVerify`, `interval`) with
  `models-data-extractor`: the poll of each endpoint's model list that poolgate always runs (`picker.pool.served`,
  read by the built-in served-model filter). Declared, it polls `path` every `interval` (rounded to a multiple of
  `--refresh-metrics-interval`), or every scrape when `interval` is omitted, as upstream; undeclared, poolgate polls
  `/v1/models` every 5 s. Another scheme, or TLS parameters, are refused.
- `endpoint-notification-source`: pod add/remove notifications; poolgate's pool state always has them.
- `probabilistic-admitter` (`queueDepthThreshold` 5, `kvCacheUtilThreshold` 0.8, `power` 5, `k` 300): a
  sheddable request (priority < 0) is refused (429) with probability min(saturation^power x k, 1), saturation being
  the mean over the pool of max(waiting / queueDepthThreshold, kv usage / kvCacheUtilThreshold), 1.0 for an endpoint
  never scraped.
- `destination-endpoint-served-verifier` (conformance tests): poolgate reports the served endpoint on every response
  when conformance steering is on; declaring it changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from picker.pool.metrics import DEFAULT_ENGINE, ENGINE_LABEL, ENGINES
from picker.pool.state import Endpoint
from picker.scheduling.framework import Admitter, Plugin
from picker.scheduling.registry import BuildContext, ConfigError, Duration, PluginParameters, plugin
from picker.scheduling.request import SchedulingRequest
from picker.scheduling.saturation import mean_utilization
from poolgate.api.contract import MODELS_PATH


class DataLayerSource(Plugin):
    """A data-layer source (`dataLayer.sources[].pluginRef`)."""


@plugin("metrics-data-source")
class MetricsDataSource(DataLayerSource):
    """Scrapes each endpoint's Prometheus metrics over HTTP (poolgate's scraper)."""

    class Parameters(PluginParameters):
        scheme: Literal["http"] = "http"
        path: Literal["/metrics"] = "/metrics"
        insecureSkipVerify: bool = True


@plugin("models-data-source")
class ModelsDataSource(DataLayerSource):
    """Polls each endpoint's OpenAI model list over HTTP (poolgate's model-list poller)."""

    class Parameters(PluginParameters):
        scheme: Literal["http"] = "http"
        path: str = Field(default=MODELS_PATH, pattern="^/")
        insecureSkipVerify: bool = True
        interval: Duration | None = None

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> ModelsDataSource:
        return cls(name, path=parameters.path, interval=parameters.interval)

    def __init__(self, name: str = "", *, path: str = MODELS_PATH, interval: float | None = None) -> None:
        super().__init__(name)
        self.path = path
        self.interval = interval  # seconds; None: every metrics scrape


@plugin("models-data-extractor")
class ModelsDataExtractor(Plugin):
    """Records each endpoint's model list from `models-data-source` (built into poolgate's poller); listed in
    `dataLayer.sources[].extractors`."""


@plugin("endpoint-notification-source")
class EndpointNotificationSource(DataLayerSource):
    """Notifies extractors of endpoints joining and leaving (poolgate's pool state)."""


@plugin("core-metrics-extractor")
class CoreMetricsExtractor(Plugin):
    """Reads the engines' queue, running, KV, LoRA and cache-config metrics (poolgate's built-in engines); listed in
    `dataLayer.sources[].extractors`."""

    class Parameters(PluginParameters):
        engineLabelKey: str = ENGINE_LABEL
        defaultEngine: str = DEFAULT_ENGINE
        engineConfigs: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> CoreMetricsExtractor:
        if parameters.engineConfigs:
            raise ConfigError(
                f"plugin {name!r} (core-metrics-extractor): engineConfigs (custom metric names) are not implemented; "
                f"poolgate has the engines {sorted(ENGINES)}"
            )
        if parameters.engineLabelKey != ENGINE_LABEL or parameters.defaultEngine != DEFAULT_ENGINE:
            raise ConfigError(
                f"plugin {name!r} (core-metrics-extractor): poolgate reads the engine from label {ENGINE_LABEL!r} "
                f"with default {DEFAULT_ENGINE!r}; other values are not implemented"
            )
        return cls(name)


@plugin("probabilistic-admitter")
class ProbabilisticAdmitter(Admitter):
    """Refuses sheddable requests with a probability that grows with the pool's saturation."""

    class Parameters(PluginParameters):
        queueDepthThreshold: int = Field(default=5, gt=0)
        kvCacheUtilThreshold: float = Field(default=0.8, gt=0)
        power: float = Field(default=5.0, gt=0)
        k: float = Field(default=300.0, gt=0)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> ProbabilisticAdmitter:
        return cls(
            name,
            rng=context.rng,
            queue_depth_threshold=parameters.queueDepthThreshold,
            kv_cache_util_threshold=parameters.kvCacheUtilThreshold,
            power=parameters.power,
            k=parameters.k,
        )

    def __init__(
        self,
        name: str = "",
        *,
        rng: random.Random,
        queue_depth_threshold: float = 5,
        kv_cache_util_threshold: float = 0.8,
        power: float = 5.0,
        k: float = 300.0,
    ) -> None:
        super().__init__(name)
        self.rng = rng
        self.queue_depth_threshold = queue_depth_threshold
        self.kv_cache_util_threshold = kv_cache_util_threshold
        self.power = power
        self.k = k

    def pool_saturation(self, endpoints: Sequence[Endpoint]) -> float:
        """Mean over the endpoints of max(waiting / queue threshold, KV usage / KV threshold); 1.0 if never scraped."""
        return mean_utilization(endpoints, self.queue_depth_threshold, self.kv_cache_util_threshold)

    def rejection_probability(self, endpoints: Sequence[Endpoint]) -> float:
        """The probability that a sheddable request is refused now."""
        return min(self.pool_saturation(endpoints) ** self.power * self.k, 1.0)

    def admit(self, request: SchedulingRequest, endpoints: Sequence[Endpoint], now: float) -> bool:
        if request.priority >= 0 or not endpoints:
            return True
        return self.rng.random() >= self.rejection_probability(endpoints)


@plugin("destination-endpoint-served-verifier")
class DestinationEndpointServedVerifier(Plugin):
    """Conformance hook: poolgate reports the served endpoint itself when steering is on (no effect)."""
