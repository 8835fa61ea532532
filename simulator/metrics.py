"""Prometheus metrics of a simulated server, under vLLM's or SGLang's exact names.

`EngineStats` accumulates counters and histograms as the engine runs (a histogram takes weighted observations, so a
span of identical decode steps costs one update); `ServerCollector` renders them, plus the live gauges, through
prometheus-client into a per-server `CollectorRegistry`. `gauge_families(server)` is shared by `/metrics` and by
`ServerModel.gauge_samples()`, so both show exactly the same samples. `MetricsPage` serves `/metrics`: whole or only
the samples a scraper names, rendered again only when the server's state has changed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from simulator.model import Request, ServerModel

# Bucket bounds of vLLM's histograms (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)


@dataclass(frozen=True)
class EngineNames:
    """The metric names of one engine; None = the engine has no such series."""

    waiting: str
    running: str
    kv_usage: str
    cache_config: str
    prompt_tokens: str
    generation_tokens: str
    ttft: str
    itl: str
    e2e: str
    lora_info: str | None = None
    prefix_hits: str | None = None
    prefix_queries: str | None = None
    cached_tokens: str | None = None


NAMES = {
    "vllm": EngineNames(
        waiting="vllm:num_requests_waiting",
        running="vllm:num_requests_running",
        kv_usage="vllm:kv_cache_usage_perc",
        cache_config="vllm:cache_config_info",
        lora_info="vllm:lora_requests_info",
        prompt_tokens="vllm:prompt_tokens",
        generation_tokens="vllm:generation_tokens",
        prefix_hits="vllm:prefix_cache_hits",
        prefix_queries="vllm:prefix_cache_queries",
        ttft="vllm:time_to_first_token_seconds",
        itl="vllm:inter_token_latency_seconds",
        e2e="vllm:e2e_request_latency_seconds",
    ),
    "sglang": EngineNames(
        waiting="sglang:num_queue_reqs",
        running="sglang:num_running_reqs",
        kv_usage="sglang:token_usage",
        cache_config="sglang:cache_config_info",
        prompt_tokens="sglang:prompt_tokens",
        generation_tokens="sglang:generation_tokens",
        cached_tokens="sglang:cached_tokens",
        ttft="sglang:time_to_first_token_seconds",
        itl="sglang:inter_token_latency_seconds",
        e2e="sglang:e2e_request_latency_seconds",
    ),
}


class WeightedHistogram:
    """Bucket counts and sum of observations, each observation possibly repeated `times` times."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Record `value` `times` times."""
        self.counts[bisect_left(self.bounds, value)] += times
        self.total += value * times

    def count(self) -> int:
        """Return the number of observations."""
        return sum(self.counts)

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """Return Prometheus buckets: (upper bound, observations at or below it), ending with "+Inf"."""
        buckets, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts):
            running += count
            buckets.append((bound, running))
        return buckets


class EngineStats:
    """Counters and latency histograms of one engine since it started."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0
        self.finished_requests = 0
        self.ttft = WeightedHistogram(TTFT_BUCKETS)
        self.itl = WeightedHistogram(ITL_BUCKETS)
        self.e2e = WeightedHistogram(E2E_BUCKETS)

    def on_admit(self, request: Request) -> None:
        """A request entered the batch: count its prefix-cache lookup (in tokens, as vLLM does)."""
        self.prefix_cache_queries += request.prompt_tokens
        self.prefix_cache_hits += request.cached_tokens

    def on_span(self, decode_tokens: int, step_time: float, first_tokens: list[Request]) -> None:
        """Steps ended: `decode_tokens` tokens after a gap of `step_time` each, and these requests' first tokens."""
        self.generation_tokens += decode_tokens + len(first_tokens)
        if decode_tokens:
            self.itl.observe(step_time, decode_tokens)
        for request in first_tokens:
            self.prompt_tokens += request.prompt_tokens
            if request.ttft is not None:  # always, once the first token is out
                self.ttft.observe(request.ttft)

    def on_finish(self, request: Request) -> None:
        """A request generated its last token."""
        self.finished_requests += 1
        if request.e2e is not None:  # always, once finished
            self.e2e.observe(request.e2e)


def gauge_families(server: ServerModel) -> list[Metric]:
    """The gauge families of a server's scrape: waiting, running, KV usage, cache config and LoRA info."""
    config, names = server.config, NAMES[server.config.engine]
    base_labels, base_values = _base_labels(server)
    families: list[Metric] = []
    for key, name, value in (
        ("waiting", names.waiting, len(server.waiting)),
        ("running", names.running, len(server.running)),
        ("kv_usage", names.kv_usage, server.kv.usage()),
    ):
        family = GaugeMetricFamily(name, _HELP[key], labels=base_labels)
        family.add_metric(base_values, value)
        families.append(family)
    if config.engine == "vllm":
        cache_labels = {
            "block_size": str(config.block_size),
            "enable_prefix_caching": str(config.prefix_caching),
            "engine": "0",
            "num_gpu_blocks": str(config.num_gpu_blocks),
        }
    else:
        cache_labels = {
            "model_name": config.model,
            "num_pages": str(config.num_gpu_blocks),
            "page_size": str(config.block_size),
        }
    family = GaugeMetricFamily(names.cache_config, _HELP["cache_config"], labels=list(cache_labels))
    family.add_metric(list(cache_labels.values()), 1)
    families.append(family)
    if names.lora_info and config.max_loras:
        family = GaugeMetricFamily(
            names.lora_info,
            _HELP["lora_info"],
            labels=["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
        )
        for running, waiting, stamp in server.lora_info_series():
            family.add_metric([str(config.max_loras), running, waiting], stamp)
        families.append(family)
    return families


class ServerCollector:
    """A prometheus-client collector that reads one simulated server at scrape time."""

    def __init__(self, server: ServerModel) -> None:
        self.server = server

    def describe(self) -> list[Metric]:
        """The families the server shows, so that a registry restricted to some names (`?name[]=`) finds them."""
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        """Yield every family of the server's `/metrics`."""
        server = self.server
        names, stats = NAMES[server.config.engine], server.stats
        labels, values = _base_labels(server)
        yield from gauge_families(server)
        for key, counter_name, value in (
            ("prompt_tokens", names.prompt_tokens, stats.prompt_tokens),
            ("generation_tokens", names.generation_tokens, stats.generation_tokens),
            ("prefix_hits", names.prefix_hits, stats.prefix_cache_hits),
            ("prefix_queries", names.prefix_queries, stats.prefix_cache_queries),
            ("cached_tokens", names.cached_tokens, stats.prefix_cache_hits),
        ):
            if counter_name:
                counter = CounterMetricFamily(counter_name, _HELP[key], labels=labels)
                counter.add_metric(values, value)
                yield counter
        for key, histogram_name, histogram in (
            ("ttft", names.ttft, stats.ttft),
            ("itl", names.itl, stats.itl),
            ("e2e", names.e2e, stats.e2e),
        ):
            family = HistogramMetricFamily(histogram_name, _HELP[key], labels=labels)
            family.add_metric(values, histogram.cumulative_buckets(), histogram.total)
            yield family


def registry_for(server: ServerModel) -> CollectorRegistry:
    """Return a new registry holding only this server's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    return registry


class MetricsPage:
    """A server's `/metrics` text, whole or restricted to some sample names (prometheus-client's `?name[]=`), rendered
    again only when something it shows has changed: a scraper polling every 50 ms mostly sees an unchanged server."""

    KEPT_PAGES = 8  # distinct name selections cached at once

    def __init__(self, server: ServerModel) -> None:
        self.server = server
        self.registry = registry_for(server)
        self.renders = 0  # how many times a page was rendered rather than served from the cache
        self._pages: dict[frozenset[str] | None, tuple[tuple[object, ...], bytes]] = {}

    def render(self, names: Iterable[str] = ()) -> bytes:
        """The page in the Prometheus text format, with only the samples named (all of them when none are)."""
        selection = frozenset(names) or None
        state = _shown_state(self.server)
        cached = self._pages.get(selection)
        if cached is not None and cached[0] == state:
            return cached[1]
        registry = self.registry if selection is None else self.registry.restricted_registry(selection)
        page = generate_latest(registry)  # type: ignore[arg-type]  # a restricted registry collects alike
        self.renders += 1
        if selection not in self._pages and len(self._pages) >= self.KEPT_PAGES:
            self._pages.clear()
        self._pages[selection] = (state, page)
        return page


def _shown_state(server: ServerModel) -> tuple[object, ...]:
    """Everything a page shows that can change: the gauges, the counters, and so the histograms (each observation
    moves a counter: a first token the prompt tokens, a decode step the generation tokens, an end the finished)."""
    stats = server.stats
    return (
        len(server.waiting),
        len(server.running),
        server.kv.usage(),
        stats.prompt_tokens,
        stats.generation_tokens,
        stats.prefix_cache_queries,
        stats.prefix_cache_hits,
        stats.finished_requests,
        tuple(server.lora_info_series()),
    )


def _base_labels(server: ServerModel) -> tuple[list[str], list[str]]:
    if server.config.engine == "vllm":
        return ["model_name", "engine"], [server.config.model, "0"]
    return ["model_name"], [server.config.model]


_HELP = {
    "waiting": "Number of requests waiting to be processed.",
    "running": "Number of requests in model execution batches.",
    "kv_usage": "KV-cache usage. 1 means 100 percent usage.",
    "cache_config": "Information of the LLMEngine CacheConfig",
    "lora_info": "Running stats on lora requests.",
    "prompt_tokens": "Number of prefill tokens processed.",
    "generation_tokens": "Number of generation tokens processed.",
    "prefix_hits": "Prefix cache hits, in terms of number of cached tokens.",
    "prefix_queries": "Prefix cache queries, in terms of number of queried tokens.",
    "cached_tokens": "Number of cached prompt tokens.",
    "ttft": "Histogram of time to first token in seconds.",
    "itl": "Histogram of inter-token latency in seconds.",
    "e2e": "Histogram of e2e request latency in seconds.",
}
