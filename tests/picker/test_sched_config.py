"""Building profiles from EndpointPickerConfig YAML, and the errors for configs poolgate cannot run."""

import random

import pytest

from picker.scheduling import BUILTIN_CONFIGS, ConfigError, builtin_config, load_config
from picker.scheduling.filters import StaleMetricsFilter
from picker.scheduling.pickers import MaxScorePicker, WeightedRandomPicker
from picker.scheduling.registry import parse_duration
from picker.scheduling.scorers import NoHitLruScorer, PrefixCacheScorer, QueueScorer

HEADER = "apiVersion: {}\nkind: EndpointPickerConfig\n"


def yaml_config(body, api="llm-d.ai/v1alpha1"):
    return HEADER.format(api) + body


def test_profiles_with_weights_names_and_a_weighted_random_picker():
    config = load_config(
        yaml_config(
            """
plugins:
- type: queue-scorer
  name: queue
- type: prefix-cache-scorer
  parameters: {maxPrefixBlocksToMatch: 16, lruCapacityPerServer: 100}
- type: stale-metrics-filter
  parameters: {maxAge: 500ms}
- type: weighted-random-picker
  parameters: {maxNumOfEndpoints: 1}
- type: single-profile-handler
schedulingProfiles:
- name: main
  plugins:
  - pluginRef: stale-metrics-filter
  - pluginRef: queue
    weight: 2.5
  - pluginRef: prefix-cache-scorer
  - pluginRef: weighted-random-picker
""",
            api="inference.networking.x-k8s.io/v1alpha1",
        ),
        random.Random(0),
    )
    profile = config.profile("main")
    assert isinstance(profile.filters[0], StaleMetricsFilter) and profile.filters[0].max_age == 0.5
    (queue, w1), (prefix, w2) = profile.scorers
    assert isinstance(queue, QueueScorer) and queue.name == "queue" and w1 == 2.5
    assert isinstance(prefix, PrefixCacheScorer) and w2 == 1.0
    assert prefix.producer.max_prefix_blocks == 16 and prefix.producer.lru_capacity == 100
    assert isinstance(profile.picker, WeightedRandomPicker)
    assert profile.picker in profile.plugins() and prefix.producer in profile.plugins()


def test_without_profiles_a_default_profile_holds_every_plugin_and_a_max_score_picker():
    config = load_config(yaml_config("plugins:\n- type: queue-scorer\n- type: kv-cache-scorer\n"))
    profile = config.profile()
    assert profile.name == "default" and len(profile.scorers) == 2
    assert isinstance(profile.picker, MaxScorePicker)


def test_prefix_aware_plugins_share_one_index_configured_by_the_producer():
    config = load_config(
        yaml_config("""
plugins:
- type: prefix-cache-scorer
- type: no-hit-lru-scorer
- type: approx-prefix-cache-producer
  parameters: {blockSizeTokens: 32, autoTune: false}
""")
    )
    scorers = [scorer for scorer, _ in config.profile().scorers]
    prefix = next(s for s in scorers if isinstance(s, PrefixCacheScorer))
    no_hit = next(s for s in scorers if isinstance(s, NoHitLruScorer))
    assert prefix.producer is no_hit.index
    assert prefix.producer.block_size_tokens == 32 and not prefix.producer.auto_tune


def test_saturation_detector_section_and_plugin():
    section = load_config(
        yaml_config("""
plugins: [{type: queue-scorer}]
saturationDetector: {queueDepthThreshold: 10, kvCacheUtilThreshold: 0.9, metricsStalenessThreshold: 1s}
""")
    )
    assert (
        section.saturation.queue_depth_threshold,
        section.saturation.kv_cache_util_threshold,
        section.saturation.metrics_staleness_threshold,
    ) == (10, 0.9, 1.0)
    plugin = load_config(
        yaml_config("plugins:\n- type: utilization-detector\n  parameters: {queueDepthThreshold: 3}\n")
    )
    assert plugin.saturation.queue_depth_threshold == 3
    assert plugin.profile().filters == []  # listed only in `plugins`, the detector does not filter
    default = load_config(yaml_config("plugins: [{type: queue-scorer}]\n"))
    assert (default.saturation.queue_depth_threshold, default.saturation.metrics_staleness_threshold) == (5, 0.2)


@pytest.mark.parametrize(
    "body, message",
    [
        ("plugins:\n- type: magic-scorer\n  name: wizard\n", "plugin 'wizard' has unknown type 'magic-scorer'"),
        (
            "plugins:\n- type: queue-scorer\n  parameters: {speed: 3}\n",
            "plugin 'queue-scorer' (queue-scorer) has invalid",
        ),
        ("plugins:\n- type: stale-metrics-filter\n  parameters: {maxAge: soon}\n", "stale-metrics-filter"),
        ("plugins:\n- type: queue-scorer\n- type: queue-scorer\n", "declared twice"),
        (
            "plugins: [{type: queue-scorer}]\nschedulingProfiles:\n- name: p\n  plugins: [{pluginRef: ghost}]\n",
            "profile 'p' refers to undeclared plugin 'ghost'",
        ),
        (
            "plugins: [{type: random-picker}, {type: max-score-picker}]\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - {pluginRef: random-picker}\n  - {pluginRef: max-score-picker}\n",
            "at most one is allowed",
        ),
        (
            "plugins:\n- type: approx-prefix-cache-producer\n- type: prefix-cache-scorer\n  parameters: {blockSizeTokens: 5}\n",
            "prefix index parameters differ",
        ),
        (
            "plugins: [{type: queue-scorer}]\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - {pluginRef: queue-scorer, weight: -1}\n",
            "invalid EndpointPickerConfig",
        ),
        ("plugins: []\nunknownSection: 1\n", "invalid EndpointPickerConfig"),
    ],
)
def test_bad_configs_are_rejected_with_a_clear_error(body, message):
    with pytest.raises(ConfigError) as error:
        load_config(yaml_config(body))
    assert message in str(error.value)


def test_wrong_kind_version_and_yaml():
    with pytest.raises(ConfigError, match="apiVersion"):
        load_config(yaml_config("plugins: []\n", api="example.com/v1"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("plugins: [")
    with pytest.raises(ConfigError, match="mapping"):
        load_config("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="no scheduling profile 'x'"):
        builtin_config("llmd-default").profile("x")
    with pytest.raises(ConfigError, match="no built-in profile"):
        builtin_config("fastest")


def test_durations():
    assert parse_duration("200ms") == pytest.approx(0.2)
    assert parse_duration("1m30s") == pytest.approx(90.0)
    assert parse_duration("1.5s") == pytest.approx(1.5)
    assert parse_duration(2) == 2.0
    for bad in ("", "5", "ms", "1 s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_builtin_configs_build_fresh_state_each_time():
    assert set(BUILTIN_CONFIGS) == {"llmd-default", "poolgate-default"}
    first, second = builtin_config("llmd-default"), builtin_config("llmd-default")
    index_of = lambda config: config.profile().scorers[2][0].producer  # noqa: E731
    assert index_of(first) is not index_of(second)
    assert [(s.type_name, w) for s, w in first.profile().scorers] == [
        ("queue-scorer", 2.0),
        ("kv-cache-utilization-scorer", 2.0),
        ("prefix-cache-scorer", 3.0),
    ]
