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
and `poolgate_pool_endpoint_scrape_failures`, and `poolgate_pool_endpoint_peer_requests` (the requests peer replicas
announced there and that have not ended, see `picker.server.loadexchange`).
Scheduling: `inference_extension_scheduler_e2e_duration_seconds`, `inference_extension_scheduler_attempts_total{status}`,
`inference_extension_model_rewrite_decisions_total`; scraping: `inference_extension_metrics_scrape_errors_total`
(registered by the scraper); build: `inference_extension_info{commit,build_ref}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from statistics import pstdev
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
_MODEL_PRIORITY = (*_MODEL, "priority")  # legacy inference_objective_request_total
_LLMD = (*_MODEL, "fairness_id", "priority")  # every llm_d_epp_request_* family
_LLMD_TTFT_BUCKETS = _LATENCY_BUCKETS[:24]  # up to 120 s
_TPOT_BASE: tuple[float, ...] = (
    0.0005,
    0.00205,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.125,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
)
_TPOT_BUCKETS = (*_TPOT_BASE, 0.8, 1, 2)
_ITL_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2)
LLMD = "llm_d_epp_"  # the current family; the inference_objective_/inference_pool_/inference_extension_ ones are legacy
_DEPRECATED = "[Deprecated: use {}] "


class RequestLabels(NamedTuple):
    """Who a request is: the labels of its per-request series."""

    model: str
    target: str
    fairness_id: str = ""
    priority: int = 0
    streaming: bool = False


class ModelMetrics:
    """The per-request series of one label set, in both families, bound once (label lookups are costly)."""

    __slots__ = (
        "cached_tokens",
        "duration",
        "input_tokens",
        "itl",
        "ntpot",
        "output_tokens",
        "request_sizes",
        "requests",
        "response_sizes",
        "running",
        "streaming",
        "tpot",
        "ttft",
    )

    def __init__(self, families: PickerMetrics, labels: RequestLabels) -> None:
        model, target = labels.model, labels.target
        llmd = (model, target, labels.fairness_id, str(labels.priority))

        def both(legacy, current):
            return legacy.labels(model, target), current.labels(*llmd)

        self.requests = (
            families.requests.labels(model, target, str(labels.priority)),
            families.llmd_requests.labels(*llmd),
        )
        self.duration = both(families.duration, families.llmd_duration)
        self.ttft = (
            families.ttft.labels(model, target),
            families.llmd_ttft.labels(*llmd, str(labels.streaming).lower()),
        )
        self.request_sizes = both(families.request_sizes, families.llmd_request_sizes)
        self.response_sizes = both(families.response_sizes, families.llmd_response_sizes)
        self.input_tokens = both(families.input_tokens, families.llmd_input_tokens)
        self.output_tokens = both(families.output_tokens, families.llmd_output_tokens)
        self.cached_tokens = both(families.cached_tokens, families.llmd_cached_tokens)
        self.ntpot = both(families.ntpot, families.llmd_ntpot)
        self.running = (families.running.labels(model), families.llmd_running.labels(*llmd))
        self.tpot = families.llmd_tpot.labels(*llmd)
        self.itl = families.llmd_itl.labels(*llmd)
        self.streaming = labels.streaming

    def started(self, request_bytes: int) -> None:
        """A request was picked: counted, its size recorded, running until `finished`."""
        for series in self.requests:
            series.inc()
        for series in self.request_sizes:
            series.observe(request_bytes)
        for gauge in self.running:
            gauge.inc()

    def first_token(self, seconds: float) -> None:
        """The first response body bytes arrived `seconds` after the request headers."""
        for series in self.ttft:
            series.observe(seconds)

    def token_gap(self, seconds: float) -> None:
        """Seconds between two response body chunks of a streaming response (inter-token latency)."""
        self.itl.observe(seconds)

    def finished(self) -> None:
        """The request no longer runs (completed or abandoned)."""
        for series in self.running:
            series.dec()

    def completed(self, duration: float, ttft: float | None, response_bytes: int, usage) -> None:
        """The response ended after `duration` seconds; `usage` is its token usage (or None)."""
        for series in self.duration:
            series.observe(duration)
        for series in self.response_sizes:
            series.observe(response_bytes)
        if usage is None:
            return
        if usage.prompt_tokens:
            for series in self.input_tokens:
                series.observe(usage.prompt_tokens)
        if usage.completion_tokens:
            for series in self.output_tokens:
                series.observe(usage.completion_tokens)
            for series in self.ntpot:
                series.observe(duration / usage.completion_tokens)
            if self.streaming and ttft is not None and usage.completion_tokens > 1:
                self.tpot.observe((duration - ttft) / (usage.completion_tokens - 1))
        if usage.cached_tokens:
            for series in self.cached_tokens:
                series.observe(usage.cached_tokens)


class PickerMetrics:
    """Every metric family the picker records, registered in one registry: upstream's current `llm_d_epp_*` family
    and the legacy names it still writes (see the module docstring)."""

    MODEL_CACHE_SIZE = 4096

    def __init__(self, registry: CollectorRegistry, build_ref: str = "") -> None:
        def histogram(name: str, help_text: str, buckets: tuple, labels: tuple = _MODEL) -> Histogram:
            return Histogram(name, help_text, labels, buckets=buckets, registry=registry)

        def legacy(name: str, current: str, help_text: str) -> tuple[str, str]:
            return name, _DEPRECATED.format(current) + help_text

        objective = "inference_objective_"
        self.requests = Counter(
            *legacy(objective + "request", LLMD + "request_total", "Requests by model, target model and priority."),
            _MODEL_PRIORITY,
            registry=registry,
        )
        self.errors = Counter(
            *legacy(objective + "request_error", LLMD + "request_error_total", "Request errors by error code."),
            (*_MODEL, "error_code"),
            registry=registry,
        )
        self.duration = histogram(
            *legacy(objective + "request_duration_seconds", LLMD + "request_duration_seconds", "Response latency."),
            _LATENCY_BUCKETS,
        )
        self.ttft = histogram(
            *legacy(objective + "request_ttft_seconds", LLMD + "request_ttft_seconds", "Time to first token."),
            _LATENCY_BUCKETS,
        )
        self.request_sizes = histogram(
            *legacy(objective + "request_sizes", LLMD + "request_size_bytes", "Request body sizes in bytes."),
            _REQUEST_SIZE_BUCKETS,
        )
        self.response_sizes = histogram(
            *legacy(objective + "response_sizes", LLMD + "response_size_bytes", "Response body sizes in bytes."),
            _RESPONSE_SIZE_BUCKETS,
        )
        self.input_tokens = histogram(
            *legacy(objective + "input_tokens", LLMD + "request_input_tokens", "Prompt tokens per request."),
            _INPUT_TOKEN_BUCKETS,
        )
        self.output_tokens = histogram(
            *legacy(objective + "output_tokens", LLMD + "request_output_tokens", "Completion tokens per request."),
            _OUTPUT_TOKEN_BUCKETS,
        )
        self.cached_tokens = histogram(
            *legacy(objective + "prompt_cached_tokens", LLMD + "request_cached_tokens", "Cached prompt tokens."),
            _INPUT_TOKEN_BUCKETS,
        )
        self.ntpot = histogram(
            *legacy(
                objective + "normalized_time_per_output_token_seconds",
                LLMD + "request_ntpot_seconds",
                "Request latency divided by the number of output tokens.",
            ),
            _NTPOT_BUCKETS,
        )
        self.running = Gauge(
            *legacy(objective + "running_requests", LLMD + "request_running", "Requests picked and not finished."),
            ("model_name",),
            registry=registry,
        )
        self.llmd_requests = Counter(LLMD + "request", "Total number of processed requests.", _LLMD, registry=registry)
        self.llmd_errors = Counter(
            LLMD + "request_error", "Total number of request errors.", (*_LLMD, "error_code"), registry=registry
        )
        self.llmd_duration = histogram(
            LLMD + "request_duration_seconds", "End-to-end request latency in seconds.", _LATENCY_BUCKETS, _LLMD
        )
        self.llmd_request_sizes = histogram(
            LLMD + "request_size_bytes", "Incoming request body sizes in bytes.", _REQUEST_SIZE_BUCKETS, _LLMD
        )
        self.llmd_response_sizes = histogram(
            LLMD + "response_size_bytes", "Outgoing response body sizes in bytes.", _RESPONSE_SIZE_BUCKETS, _LLMD
        )
        self.llmd_input_tokens = histogram(
            LLMD + "request_input_tokens", "Input tokens per request.", _INPUT_TOKEN_BUCKETS, _LLMD
        )
        self.llmd_output_tokens = histogram(
            LLMD + "request_output_tokens", "Output tokens per request.", _OUTPUT_TOKEN_BUCKETS, _LLMD
        )
        self.llmd_cached_tokens = histogram(
            LLMD + "request_cached_tokens", "Prompt tokens read from cache per request.", _INPUT_TOKEN_BUCKETS, _LLMD
        )
        self.llmd_running = Gauge(
            LLMD + "request_running", "Current number of running requests.", _LLMD, registry=registry
        )
        self.llmd_ntpot = histogram(
            LLMD + "request_ntpot_seconds", "End-to-end latency divided by output tokens.", _NTPOT_BUCKETS, _LLMD
        )
        self.llmd_ttft = histogram(
            LLMD + "request_ttft_seconds",
            "Time to first token in seconds (request headers to first response bytes).",
            _LLMD_TTFT_BUCKETS,
            (*_LLMD, "streaming"),
        )
        self.llmd_tpot = histogram(
            LLMD + "request_streaming_tpot_seconds",
            "Time per output token of streaming requests: (e2e - TTFT) / (output tokens - 1).",
            _TPOT_BUCKETS,
            _LLMD,
        )
        self.llmd_itl = histogram(
            LLMD + "request_streaming_itl_seconds",
            "Time between consecutive response body chunks of streaming requests.",
            _ITL_BUCKETS,
            _LLMD,
        )
        extension = "inference_extension_"
        self.scheduler_latency = tuple(
            Histogram(name, help_text, buckets=_SCHEDULER_BUCKETS, registry=registry)
            for name, help_text in (
                legacy(extension + "scheduler_e2e_duration_seconds", LLMD + "scheduler_e2e_duration_seconds", ""),
                (LLMD + "scheduler_e2e_duration_seconds", "End-to-end scheduling latency in seconds."),
            )
        )
        self.scheduler_attempts = Counter(
            *legacy(extension + "scheduler_attempts", LLMD + "scheduler_attempts_total", "Scheduling attempts."),
            ("status", "target_model_name", "pod_name", "namespace", "port"),
            registry=registry,
        )
        self.llmd_scheduler_attempts = Counter(
            LLMD + "scheduler_attempts",
            "Scheduling attempts by outcome and picked endpoint.",
            ("status", "target_model_name", "endpoint_name", "namespace", "port"),
            registry=registry,
        )
        self.rewrites = tuple(
            Counter(name, help_text, ("model_rewrite_name", "model_name", "target_model"), registry=registry)
            for name, help_text in (
                legacy(extension + "model_rewrite_decisions", LLMD + "model_rewrite_decisions_total", ""),
                (LLMD + "model_rewrite_decisions", "Model rewrite decisions."),
            )
        )
        for name, help_text in (
            legacy(extension + "info", LLMD + "info", "Build information."),
            (LLMD + "info", "Build information of the endpoint picker."),
        ):
            Gauge(name, help_text, ("commit", "build_ref"), registry=registry).labels("", build_ref).set(1)
        self._models: dict[RequestLabels, ModelMetrics] = {}
        self._attempts: dict[tuple[str, ...], tuple[Counter, Counter]] = {}  # bound attempt counters, both families

    def model(self, labels: RequestLabels) -> ModelMetrics:
        """The bound per-request series of a label set."""
        bound = self._models.get(labels)
        if bound is None:
            if len(self._models) >= self.MODEL_CACHE_SIZE:
                self._models.clear()
            bound = self._models[labels] = ModelMetrics(self, labels)
        return bound

    def error(self, labels: RequestLabels, code: str) -> None:
        """Count a refused or failed request under its error code in both families."""
        self.errors.labels(labels.model, labels.target, code).inc()
        self.llmd_errors.labels(labels.model, labels.target, labels.fairness_id, str(labels.priority), code).inc()

    def scheduled(self, seconds: float, target: str, endpoint: tuple[str, str, str] | None) -> None:
        """A scheduling attempt took `seconds`; `endpoint` is the picked (pod name, namespace, port), None if none."""
        for histogram in self.scheduler_latency:
            histogram.observe(seconds)
        labels = ("failure", target, "", "", "") if endpoint is None else ("success", target, *endpoint)
        bound = self._attempts.get(labels)
        if bound is None:
            if len(self._attempts) >= self.MODEL_CACHE_SIZE:
                self._attempts.clear()
            bound = self._attempts[labels] = (
                self.scheduler_attempts.labels(*labels),
                self.llmd_scheduler_attempts.labels(*labels),
            )
        for counter in bound:
            counter.inc()

    def rewrite(self, rewrite_name: str, model: str, target: str) -> None:
        """Count a rewrite decision of an InferenceModelRewrite."""
        for counter in self.rewrites:
            counter.labels(rewrite_name, model, target).inc()


class PoolCollector(Collector):
    """The per-pool gauges, computed from the pools' state whenever Prometheus scrapes."""

    def __init__(self, pools: Callable[[], Iterable[tuple[str, PoolState]]]) -> None:
        self._pools = pools

    def collect(self):
        pool = ["name"]

        def gauge(name: str, help_text: str, labels: list[str] = pool) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, help_text, labels=labels)

        def deprecated(name: str, current: str, help_text: str) -> GaugeMetricFamily:
            return gauge(name, _DEPRECATED.format(current) + help_text)

        averages = {  # (legacy, current) per pool statistic
            "kv": (
                deprecated("inference_pool_average_kv_cache_utilization", LLMD + "average_kv_cache_utilization", ""),
                gauge(LLMD + "average_kv_cache_utilization", "The average KV-cache utilization of the pool."),
            ),
            "queue": (
                deprecated("inference_pool_average_queue_size", LLMD + "average_queue_size", ""),
                gauge(LLMD + "average_queue_size", "The average number of requests waiting in the pool's servers."),
            ),
            "running": (
                deprecated("inference_pool_average_running_requests", LLMD + "average_running_requests", ""),
                gauge(LLMD + "average_running_requests", "The average number of requests running in the pool."),
            ),
        }
        spread = {
            "kv": gauge(LLMD + "std_dev_kv_cache_utilization", "Standard deviation of the pool's KV-cache use."),
            "queue": gauge(LLMD + "std_dev_queue_size", "Standard deviation of the pool's waiting requests."),
            "running": gauge(LLMD + "std_dev_running_requests", "Standard deviation of the pool's running requests."),
        }
        ready_pods = deprecated("inference_pool_ready_pods", LLMD + "ready_endpoints", "Ready pods in the pool.")
        ready_endpoints = gauge(LLMD + "ready_endpoints", "The number of ready endpoints in the pool.")
        per_endpoint_queue = gauge(
            LLMD + "per_endpoint_queue_size",
            "Requests waiting in each endpoint's model server.",
            ["name", "model_server_endpoint"],
        )
        age = gauge(
            "poolgate_pool_endpoint_metrics_age_seconds",
            "Seconds since the endpoint's last good metrics scrape (+Inf: never scraped).",
            ["name", "endpoint"],
        )
        peers = gauge(
            "poolgate_pool_endpoint_peer_requests",
            "Requests that peer replicas of this picker announced on the endpoint and that have not ended.",
            ["name", "endpoint"],
        )
        errors = gauge(
            "poolgate_pool_endpoint_scrape_failures",
            "Consecutive failed metrics scrapes of the endpoint since its last good one.",
            ["name", "endpoint"],
        )
        for name, state in self._pools():
            endpoints = state.endpoints()
            now = state.clock()
            for endpoint in endpoints:
                age.add_metric([name, endpoint.key], endpoint.metrics_age(now))
                errors.add_metric([name, endpoint.key], endpoint.metrics.scrape_errors)
                peers.add_metric([name, endpoint.key], endpoint.peer_inflight)
                if endpoint.metrics.updated_at is not None:
                    per_endpoint_queue.add_metric([name, endpoint.key], endpoint.metrics.waiting)
            scraped = [e.metrics for e in endpoints if e.metrics.updated_at is not None]
            values = {
                "kv": [m.kv_usage for m in scraped],
                "queue": [m.waiting for m in scraped],
                "running": [m.running for m in scraped],
            }
            for key, numbers in values.items():
                mean = sum(numbers) / (len(numbers) or 1)
                for family in averages[key]:
                    family.add_metric([name], mean)
                spread[key].add_metric([name], pstdev(numbers) if numbers else 0.0)
            ready_pods.add_metric([name], len({e.pod_name or e.address for e in endpoints}))
            ready_endpoints.add_metric([name], len(endpoints))
        for pair in averages.values():
            yield from pair
        yield from spread.values()
        yield from (ready_pods, ready_endpoints, per_endpoint_queue, age, errors, peers)

    def describe(self):
        return []
