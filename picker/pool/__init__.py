"""Pool state for the endpoint picker: endpoints, their engine metrics, scraping, objectives and model rewrites.

pool = PoolState()                                   # clock defaults to time.monotonic
pool.set_endpoints(specs_for_pod("10.0.0.5", [8000], "vllm-0", {"llm-d.ai/engine-type": "vllm"}))
async with MetricsScraper(pool):                     # or: pool.apply_samples(key, samples, now)
    ...
"""

from picker.pool.metrics import (
    DEFAULT_ENGINE,
    ENGINE_LABEL,
    ENGINES,
    LEGACY_ENGINE_LABEL,
    EngineMetricNames,
    MetricsError,
    engine_name,
    parse_metrics_text,
    read_metrics_text,
    read_samples,
)
from picker.pool.objectives import (
    ModelRewrite,
    RewriteRule,
    RewriteTable,
    RewriteTarget,
    objective_priority,
    rewrite_from_object,
)
from picker.pool.scraper import MetricsScraper, scrape_error_counter
from picker.pool.state import (
    Endpoint,
    EndpointMetrics,
    EndpointSpec,
    InflightTicket,
    PoolState,
    endpoint_key,
    specs_for_pod,
)

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "ENGINE_LABEL",
    "LEGACY_ENGINE_LABEL",
    "Endpoint",
    "EndpointMetrics",
    "EndpointSpec",
    "EngineMetricNames",
    "InflightTicket",
    "MetricsError",
    "MetricsScraper",
    "ModelRewrite",
    "PoolState",
    "RewriteRule",
    "RewriteTable",
    "RewriteTarget",
    "endpoint_key",
    "engine_name",
    "objective_priority",
    "parse_metrics_text",
    "read_metrics_text",
    "read_samples",
    "rewrite_from_object",
    "scrape_error_counter",
    "specs_for_pod",
]
