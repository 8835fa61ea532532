"""Pool membership, metric application and the picker's in-flight counters."""

import math

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, MetricsError, PoolState, endpoint_key, specs_for_pod


def vllm(waiting, running=0, kv=0.0):
    return [
        Sample("vllm:num_requests_waiting", {}, waiting, None, None),
        Sample("vllm:num_requests_running", {}, running, None, None),
        Sample("vllm:kv_cache_usage_perc", {}, kv, None, None),
    ]


def test_keys_and_data_parallel_specs():
    assert endpoint_key("10.0.0.1", 8000) == "10.0.0.1:8000"
    assert endpoint_key("fd00::1", 8000) == "[fd00::1]:8000"
    specs = specs_for_pod("10.0.0.1", [8000, 8001], "pod-a", {"app": "x"})
    assert [spec.key for spec in specs] == ["10.0.0.1:8000", "10.0.0.1:8001"]


def test_set_endpoints_adds_updates_and_removes_with_notifications():
    pool = PoolState()
    added, removed = [], []
    pool.subscribe(added=lambda e: added.append(e.key), removed=removed.append)
    pool.set_endpoints([EndpointSpec("10.0.0.1", 8000, "a"), EndpointSpec("10.0.0.2", 8000, "b")])
    pool.apply_samples("10.0.0.1:8000", vllm(3), now=1.0)
    pool.set_endpoints(
        [EndpointSpec("10.0.0.1", 8000, "a2", {"llm-d.ai/engine-type": "sglang"}), EndpointSpec("10.0.0.3", 8000, "c")]
    )
    assert [e.key for e in pool.endpoints()] == ["10.0.0.1:8000", "10.0.0.3:8000"]
    assert added == ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
    assert removed == ["10.0.0.2:8000"]
    kept = pool.get("10.0.0.1:8000")
    assert kept.pod_name == "a2" and kept.engine.engine == "sglang"
    assert kept.metrics.waiting == 3  # metrics survive an identity update
    assert pool.remove("10.0.0.3:8000") and not pool.remove("10.0.0.3:8000")


def test_failed_reading_keeps_last_good_values_and_age_grows():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    endpoint = pool.get("10.0.0.1:8000")
    assert endpoint.metrics_age(5.0) == math.inf
    pool.apply_samples(endpoint.key, vllm(2, 1, 0.3), now=1.0)
    with pytest.raises(MetricsError):
        pool.apply_samples(endpoint.key, vllm(9)[:1], now=2.0)
    assert pool.record_scrape_error(endpoint.key, "boom") == 1
    assert pool.record_scrape_error(endpoint.key, "boom") == 2
    assert (endpoint.metrics.waiting, endpoint.metrics.kv_usage, endpoint.metrics.updated_at) == (2, 0.3, 1.0)
    assert endpoint.metrics_age(3.5) == 2.5
    pool.apply_samples(endpoint.key, vllm(0), now=4.0)
    assert endpoint.metrics.scrape_errors == 0 and endpoint.metrics.last_error == ""


def test_samples_for_unknown_endpoint_are_ignored():
    pool = PoolState()
    pool.apply_samples("10.9.9.9:1", vllm(1), now=0.0)
    assert len(pool) == 0


def test_dispatch_release_and_unreflected_counts():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    endpoint = pool.get("10.0.0.1:8000")
    first = pool.dispatch(endpoint.key, 100, now=0.0)
    mark = pool.scrape_mark()  # a scrape starts: `first` is reflected in what it returns
    second = pool.dispatch(endpoint.key, 50, now=0.01)
    assert (endpoint.inflight, endpoint.inflight_tokens, endpoint.unreflected) == (2, 150, 2)
    pool.apply_samples(endpoint.key, vllm(1), now=0.02, mark=mark)
    assert endpoint.unreflected == 1  # only `second` was dispatched after the scrape began
    pool.release(second)
    assert (endpoint.inflight, endpoint.inflight_tokens, endpoint.unreflected) == (1, 100, 0)
    pool.release(first)
    pool.release(first)  # idempotent
    assert (endpoint.inflight, endpoint.inflight_tokens, endpoint.unreflected) == (0, 0, 0)


def test_scrape_without_mark_reflects_everything_dispatched():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    endpoint = pool.get("10.0.0.1:8000")
    ticket = pool.dispatch(endpoint.key, 10, now=0.0)
    pool.apply_samples(endpoint.key, vllm(1), now=0.1)
    assert endpoint.unreflected == 0 and endpoint.inflight == 1
    pool.release(ticket)
    assert endpoint.unreflected == 0 and endpoint.inflight == 0


def test_ticket_of_a_removed_endpoint_releases_as_noop():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    ticket = pool.dispatch("10.0.0.1:8000", 10, now=0.0)
    pool.remove("10.0.0.1:8000")
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    fresh = pool.dispatch("10.0.0.1:8000", 5, now=0.0)
    pool.release(ticket)
    assert pool.get("10.0.0.1:8000").inflight == 1  # the new endpoint's booking is untouched
    pool.release(fresh)
    assert pool.get("10.0.0.1:8000").inflight == 0


def test_pool_remembers_every_reported_lora_adapter():
    pool = PoolState()
    pool.upsert(EndpointSpec("10.0.0.1", 8000))
    lora = Sample(
        "vllm:lora_requests_info",
        {"max_lora": "2", "running_lora_adapters": "sql,chat", "waiting_lora_adapters": "math"},
        1.0,
        None,
        None,
    )
    pool.apply_samples("10.0.0.1:8000", vllm(0) + [lora], now=0.0)
    endpoint = pool.get("10.0.0.1:8000")
    assert (endpoint.metrics.max_lora, endpoint.metrics.running_adapters) == (2, frozenset({"sql", "chat"}))
    assert pool.known_adapters == {"sql", "chat", "math"}
