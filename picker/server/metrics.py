"""The picker's Prometheus metrics, named and labelled as the upstream endpoint picker (GIE pkg/epp/metrics) names them.

Per request (labels `model_name` = the model the client asked for, `target_model_name` = the model after rewrites):
`inference_objective_request_total`, `inference_objective_request_error_total{error_code}`,
`inference_objective_request_duration_seconds`, `inference_objective_request_ttft_seconds`,
`inference_objective_request_sizes`, `inference_objective_response_sizes`, `inference_objective_input_tokens`,
`inference_objective_output_tokens`, `inference_objective_prompt_cached_tokens`,
`inference_objective_normalized_time_per_output_token_seconds`, `inference_objective_running_requests{model_name}`.
Per pool (label `name`), computed when scraped: `inference_pool_average_kv_cache_utilization`,
`inference_pool_average_queue_size`, `inference_pool_average_running_requests`, `inference_pool_ready_pods`; per
endpoint (labels `name`, `endpoint`), poolgate's own staleness gauges `poolgate_pool_endpoint_metrics_age_seconds`
and `poolgate_pool_endpoint_scrape_failures`.
Scheduling: `inference_extension_scheduler_e2e_duration_seconds`, `inference_extension_scheduler_attempts_total{status}`,
`inference_extension_model_rewrite_decisions_total`; scraping: `inference_extension_metrics_scrape_errors_total`
(registered by the scraper); build: `inference_extension_info{commit,build_ref}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from picker.pool.state import PoolState

_LATENCY_BUCKETS = (
    0.005,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2,
    3,
    4,
    5,
    6,
    8,
    10,
    15,
    20,
    30,
    45,
    60,
    120,
    180,
    240,
    300,
    360,
    480,
    600,
    900,
    1200,
    1800,
    2700,
    3600,
)
_REQUEST_SIZE_BUCKETS = (
    64,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16384,
    32768,
    65536,
    131072,
    262144,
    524288,
    1048576,
    2097152,
    4194304,
    8388608,
    16777216,
    33554432,
    67108864,
    134217728,
    268435456,
    536870912,
    1073741824,
)
_RESPONSE_SIZE_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536)
_INPUT_TOKEN_BUCKETS = (
    1,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16384,
    32778,
    65536,
    131072,
    262144,
    524288,
    1048576,
)
_OUTPUT_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_NTPOT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SCHEDULER_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
_MODEL = ("model_name", "target_model_name")


class ModelMetrics(NamedTuple):
    """The per-request series of one (model, target model) pair, bound once (label lookups are costly)."""

    requests: Counter
    duration: Histogram
    ttft: Histogram
    request_sizes: Histogram
    response_sizes: Histogram
    input_tokens: Histogram
    output_tokens: Histogram
    cached_tokens: Histogram
    ntpot: Histogram
    running: Gauge


class PickerMetrics:
    """Every metric family the picker records, registered in one registry."""

    MODEL_CACHE_SIZE = 4096

    def __init__(self, registry: CollectorRegistry, build_ref: str = "") -> None:
        def histogram(name: str, help_text: str, buckets: tuple) -> Histogram:
            return Histogram(name, help_text, _MODEL, buckets=buckets, registry=registry)

        objective = "inference_objective_"
        self.requests = Counter(
            objective + "request", "Inference requests by model and target model.", _MODEL, registry=registry
        )
        self.errors = Counter(
            objective + "request_error",
            "Inference request errors by model, target model and error code.",
            (*_MODEL, "error_code"),
            registry=registry,
        )
        self.duration = histogram(
            objective + "request_duration_seconds",
            "Response latency in seconds, from the request headers to the last response byte.",
            _LATENCY_BUCKETS,
        )
        self.ttft = histogram(
            objective + "request_ttft_seconds", "Time to the first response body bytes in seconds.", _LATENCY_BUCKETS
        )
        self.request_sizes = histogram(
            objective + "request_sizes", "Request body sizes in bytes.", _REQUEST_SIZE_BUCKETS
        )
        self.response_sizes = histogram(
            objective + "response_sizes", "Response body sizes in bytes.", _RESPONSE_SIZE_BUCKETS
        )
        self.input_tokens = histogram(
            objective + "input_tokens", "Prompt tokens per request (from `usage`).", _INPUT_TOKEN_BUCKETS
        )
        self.output_tokens = histogram(
            objective + "output_tokens", "Completion tokens per request (from `usage`).", _OUTPUT_TOKEN_BUCKETS
        )
        self.cached_tokens = histogram(
            objective + "prompt_cached_tokens", "Cached prompt tokens per request (from `usage`).", _INPUT_TOKEN_BUCKETS
        )
        self.ntpot = histogram(
            objective + "normalized_time_per_output_token_seconds",
            "Request latency divided by the number of output tokens, in seconds.",
            _NTPOT_BUCKETS,
        )
        self.running = Gauge(
            objective + "running_requests",
            "Requests picked and not yet finished, by model.",
            ("model_name",),
            registry=registry,
        )
        extension = "inference_extension_"
        self.scheduler_latency = Histogram(
            extension + "scheduler_e2e_duration_seconds",
            "End-to-end scheduling latency in seconds.",
            buckets=_SCHEDULER_BUCKETS,
            registry=registry,
        )
        self.scheduler_attempts = Counter(
            extension + "scheduler_attempts", "Scheduling attempts by outcome.", ("status",), registry=registry
        )
        self.rewrites = Counter(
            extension + "model_rewrite_decisions",
            "Model rewrite decisions.",
            ("model_rewrite_name", "model_name", "target_model"),
            registry=registry,
        )
        info = Gauge(
            extension + "info", "Build information of the endpoint picker.", ("commit", "build_ref"), registry=registry
        )
        info.labels(commit="", build_ref=build_ref).set(1)
        self.scheduled = self.scheduler_attempts.labels(status="success")
        self.unscheduled = self.scheduler_attempts.labels(status="failure")
        self._models: dict[tuple[str, str], ModelMetrics] = {}

    def model(self, model: str, target: str) -> ModelMetrics:
        """The bound per-request series of a (model, target model) pair."""
        bound = self._models.get((model, target))
        if bound is None:
            if len(self._models) >= self.MODEL_CACHE_SIZE:
                self._models.clear()
            bound = self._models[(model, target)] = ModelMetrics(
                self.requests.labels(model, target),
                self.duration.labels(model, target),
                self.ttft.labels(model, target),
                self.request_sizes.labels(model, target),
                self.response_sizes.labels(model, target),
                self.input_tokens.labels(model, target),
                self.output_tokens.labels(model, target),
                self.cached_tokens.labels(model, target),
                self.ntpot.labels(model, target),
                self.running.labels(model),
            )
        return bound


class PoolCollector(Collector):
    """The per-pool gauges, computed from the pools' state whenever Prometheus scrapes."""

    def __init__(self, pools: Callable[[], Iterable[tuple[str, PoolState]]]) -> None:
        self._pools = pools

    def collect(self):
        kv = GaugeMetricFamily(
            "inference_pool_average_kv_cache_utilization",
            "The average KV-cache utilization of the pool's endpoints.",
            labels=["name"],
        )
        queue = GaugeMetricFamily(
            "inference_pool_average_queue_size",
            "The average number of requests waiting in the pool's model servers.",
            labels=["name"],
        )
        running = GaugeMetricFamily(
            "inference_pool_average_running_requests",
            "The average number of requests running in the pool's model servers.",
            labels=["name"],
        )
        ready = GaugeMetricFamily("inference_pool_ready_pods", "The number of ready pods in the pool.", labels=["name"])
        age = GaugeMetricFamily(
            "poolgate_pool_endpoint_metrics_age_seconds",
            "Seconds since the endpoint's last good metrics scrape (+Inf: never scraped).",
            labels=["name", "endpoint"],
        )
        errors = GaugeMetricFamily(
            "poolgate_pool_endpoint_scrape_failures",
            "Consecutive failed metrics scrapes of the endpoint since its last good one.",
            labels=["name", "endpoint"],
        )
        for name, state in self._pools():
            endpoints = state.endpoints()
            now = state.clock()
            for endpoint in endpoints:
                age.add_metric([name, endpoint.key], endpoint.metrics_age(now))
                errors.add_metric([name, endpoint.key], endpoint.metrics.scrape_errors)
            scraped = [e.metrics for e in endpoints if e.metrics.updated_at is not None]
            count = len(scraped) or 1
            kv.add_metric([name], sum(m.kv_usage for m in scraped) / count)
            queue.add_metric([name], sum(m.waiting for m in scraped) / count)
            running.add_metric([name], sum(m.running for m in scraped) / count)
            ready.add_metric([name], len({e.pod_name or e.address for e in endpoints}))
        yield from (kv, queue, running, ready, age, errors)

    def describe(self):
        return []
