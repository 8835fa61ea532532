"""The pools a picker serves: scheduling profiles (built-in, config file, per-pool annotation) and view updates."""

import logging
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from picker.discovery.view import PickerView
from picker.pool.objectives import ModelRewrite, RewriteRule, RewriteTarget
from picker.scheduling.registry import ConfigError
from picker.scheduling.request import SchedulingRequest
from picker.server.pools import PoolRegistry, PoolSettings, ProfileSource
from tests.support.picker import pool_view

CONFIG = """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: random-picker
schedulingProfiles:
- name: queue-only
  plugins: [{pluginRef: queue-scorer}]
- name: random
  plugins: [{pluginRef: random-picker}]
"""


def registry_with(profiles: ProfileSource) -> PoolRegistry:
    return PoolRegistry(PoolSettings(profiles, scrape_interval=None), CollectorRegistry())


def test_profile_source_builds_fresh_configs_from_builtins_or_a_config_file(caplog):
    builtin = ProfileSource()
    assert builtin.default == "poolgate-default"
    assert builtin.build(None)[1] == "poolgate-default"
    assert builtin.build("llmd-default")[1] == "llmd-default"
    first, _ = builtin.build("llmd-default")
    second, _ = builtin.build("llmd-default")
    assert first.profile() is not second.profile()  # one config (and plugin state) per pool

    from_file = ProfileSource(CONFIG)
    assert from_file.default == "queue-only"
    assert ProfileSource(CONFIG, "random").build(None)[1] == "random"
    assert from_file.build("random")[1] == "random"
    assert from_file.build("llmd-default")[1] == "llmd-default"  # annotations may name built-in profiles
    with caplog.at_level(logging.WARNING, logger="poolgate.picker"):
        assert from_file.build("no-such-profile")[1] == "queue-only"
    assert any("unknown scheduling profile" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError):
        ProfileSource(CONFIG, "missing")
    with pytest.raises(ConfigError):
        ProfileSource("kind: Nonsense")
    with pytest.raises(ConfigError):
        ProfileSource(None, "missing")


async def test_an_annotation_change_gives_the_pool_a_fresh_scheduler_and_old_requests_finish_on_the_old_one():
    pools = registry_with(ProfileSource())
    endpoints = ["127.0.0.20:8000", "127.0.0.21:8000"]
    await pools.apply(PickerView({"ns/pool": pool_view("ns/pool", endpoints)}))
    runtime = pools.pools["ns/pool"]
    assert runtime.profile == "poolgate-default"
    old_scheduler, old_state = runtime.scheduler, runtime.state
    decision = old_scheduler.schedule(SchedulingRequest("m"), old_state.clock())
    assert sum(e.inflight for e in old_state.endpoints()) == 1

    await pools.apply(PickerView({"ns/pool": pool_view("ns/pool", endpoints, profile="llmd-default")}))
    assert runtime.profile == "llmd-default"
    assert runtime.scheduler is not old_scheduler and runtime.state is not old_state
    assert [e.key for e in runtime.state.endpoints()] == endpoints
    old_scheduler.on_complete(decision, old_state.clock())
    assert sum(e.inflight for e in old_state.endpoints()) == 0
    assert sum(e.inflight for e in runtime.state.endpoints()) == 0

    await pools.apply(PickerView({"ns/pool": pool_view("ns/pool", endpoints[:1], profile="llmd-default")}))
    assert runtime.scheduler is not None and len(runtime.state) == 1  # same profile: same scheduler, fewer pods
    await pools.apply(PickerView({}))
    assert pools.pools == {}


async def test_accepted_models_follow_the_list_and_the_rewrites():
    created = datetime(2025, 1, 1, tzinfo=UTC)
    exact = ModelRewrite("exact", created, (RewriteRule(("alias",), (RewriteTarget("served"),)),))
    catch_all = ModelRewrite("all", created, (RewriteRule((), (RewriteTarget("served"),)),))
    pools = registry_with(ProfileSource())
    await pools.apply(
        PickerView(
            {
                "ns/listed": pool_view("ns/listed", [], models=frozenset({"base"}), rewrites=(exact,)),
                "ns/any": pool_view("ns/any", []),
                "ns/catch-all": pool_view("ns/catch-all", [], models=frozenset({"base"}), rewrites=(catch_all,)),
            }
        )
    )
    assert pools.pools["ns/listed"].accepted_models == frozenset({"base", "alias", "served"})
    assert pools.pools["ns/any"].accepted_models is None
    assert pools.pools["ns/catch-all"].accepted_models is None
    assert pools.pools["ns/listed"].rewrite_names[id(exact.rules[0])] == "exact"


async def test_metric_labels_are_pool_names_unless_two_namespaces_share_one():
    pools = registry_with(ProfileSource())
    await pools.apply(
        PickerView(
            {"a/pool": pool_view("a/pool", []), "b/pool": pool_view("b/pool", []), "a/other": pool_view("a/other", [])}
        )
    )
    assert sorted(label for label, _ in pools.labelled_states()) == ["a/pool", "b/pool", "other"]
