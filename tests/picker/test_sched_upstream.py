"""The upstream picker's configs (llm-d router v0.10, GIE v1.5) load and behave as upstream documents: config
sections, data-layer and parser plugins, admitters, load-aware scoring and prefill/decode disaggregation."""

from __future__ import annotations

import random

import pytest
from prometheus_client.samples import Sample

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import (
    ConfigError,
    CycleState,
    Outcome,
    PromptInput,
    Scheduler,
    SchedulingRequest,
    builtin_config,
    load_config,
)
from picker.scheduling.datalayer import ProbabilisticAdmitter
from picker.scheduling.disagg import DisaggProfileHandler
from picker.scheduling.scorers import LoadAwareScorer
from poolgate.api.contract import PREFILLER_HOST_PORT_HEADER
from tests.support.upstream import UPSTREAM_CONFIG_FILES

HEADER = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"


def test_the_reference_directory_holds_the_published_configs():
    labels = {label for label, _ in UPSTREAM_CONFIG_FILES}
    assert {
        "gie-v1.5.0/chart-default.yaml",
        "llm-d-router-v0.10/pd-epp-config.yaml",
        "llm-d-router-v0.10/epp-precise-prefix-cache-config.yaml",  # tests/kvcache/test_upstream_precise.py too
    } <= labels


@pytest.mark.parametrize("label, path", UPSTREAM_CONFIG_FILES, ids=[label for label, _ in UPSTREAM_CONFIG_FILES])
def test_every_upstream_config_loads_and_schedules(label, path):
    config = load_config(path.read_text(), random.Random(0))
    pool = pool_of(("10.0.0.1", None), ("10.0.0.2", None))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation, fallbacks=0)
    decision = scheduler.schedule(SchedulingRequest("m", PromptInput(b"hello " * 50)), 0.0)
    scheduler.close()  # e.g. the precise producer's event subscription
    assert decision.outcome is Outcome.PICKED and decision.primary in ("10.0.0.1:8000", "10.0.0.2:8000")


def pool_of(*pods, metrics=None):
    pool = PoolState(lambda: 0.0)
    for address, role in pods:
        pool.upsert(EndpointSpec(address, 8000, labels={"llm-d.ai/role": role} if role else {}))
    for key, (waiting, kv) in (metrics or {}).items():
        samples = [
            Sample("vllm:num_requests_waiting", {}, waiting, None, None),
            Sample("vllm:num_requests_running", {}, 0, None, None),
            Sample("vllm:kv_cache_usage_perc", {}, kv, None, None),
        ]
        pool.apply_samples(key, samples, now=0.0)
    return pool


@pytest.mark.parametrize(
    "body, message",
    [
        ("plugins: [{type: queue-scorer}]\nfeatureGates: [warpDrive]\n", "unknown gate 'warpDrive'; known gates"),
        ("plugins: [{type: queue-scorer}]\nfeatureGates: [flowControl]\n", "'flowControl' is not implemented"),
        ("plugins: [{type: queue-scorer}]\nfeatureGates: [flowControl=true]\n", "'flowControl' is not implemented"),
        ("plugins: [{type: queue-scorer}]\nfeatureGates: [dataLayer=maybe]\n", "'maybe' is not a boolean value"),
        (
            "plugins: [{type: queue-scorer}]\nflowControl: {saturationDetector: {pluginRef: queue-scorer}}\n",
            "not a saturation detector",
        ),
        ("plugins: [{type: queue-scorer}]\nsaturationDetector: {pluginRef: ghost}\n", "undeclared plugin 'ghost'"),
        (
            "plugins: [{type: queue-scorer}]\nsaturationDetector: {pluginRef: queue-scorer}\n",
            "not a saturation detector",
        ),
        ("plugins: [{type: queue-scorer}]\nparser: {pluginRef: queue-scorer}\n", "not a parser"),
        ("plugins: [{type: queue-scorer}]\nrequestHandler: {parsers: [{pluginRef: p}]}\n", "undeclared plugin 'p'"),
        (
            "plugins: [{type: openai-parser}]\ndataLayer: {sources: [{pluginRef: openai-parser}]}\n",
            "not a data source",
        ),
        (
            "plugins: [{type: metrics-data-source}, {type: queue-scorer}]\n"
            "dataLayer: {sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: queue-scorer}]}]}\n",
            "not a extractor",
        ),
        ("plugins: [{type: queue-scorer}]\ndataLayer: {discovery: {pluginRef: x}}\n", "discovery plugins are not"),
        ("plugins:\n- type: metrics-data-source\n  parameters: {scheme: https}\n", "metrics-data-source"),
        ("plugins:\n- type: models-data-source\n  parameters: {scheme: https}\n", "models-data-source"),
        ("plugins:\n- type: models-data-source\n  parameters: {caCertPath: /ca.pem}\n", "caCertPath"),
        ("plugins:\n- type: models-data-source\n  parameters: {path: v1/models}\n", "path"),
        (
            "plugins:\n- {type: models-data-source, name: a}\n- {type: models-data-source, name: b}\n",
            "declares 2 models-data-source plugins",
        ),
        (
            "plugins:\n- type: core-metrics-extractor\n  parameters: {engineConfigs: [{name: x}]}\n",
            "engineConfigs (custom metric names) are not implemented",
        ),
        (
            "plugins:\n- type: prefix-cache-scorer\n  parameters: {prefixMatchInfoProducerName: ghost}\n",
            "'ghost' names no declared prefix-match producer",
        ),
        ("plugins: [{type: dcgm-scorer}]\n", "unknown type 'dcgm-scorer'; poolgate supports: "),
        (
            "plugins:\n- type: prefix-based-pd-decider\n- type: disagg-profile-handler\n"
            "  parameters: {deciders: {encode: prefix-based-pd-decider}}\n",
            "encode disaggregation (multimodal) is not supported",
        ),
        (
            "plugins:\n- type: disagg-profile-handler\n  parameters: {deciders: {prefill: nobody}}\n",
            "'nobody' names no declared decider plugin",
        ),
    ],
)
def test_sections_and_plugins_poolgate_cannot_honour_are_refused_by_name(body, message):
    with pytest.raises(ConfigError) as error:
        load_config(HEADER + body)
    assert message in str(error.value)


def test_sections_referring_to_declared_plugins_are_honoured():
    config = load_config(
        HEADER
        + """
plugins:
- {type: utilization-detector, name: sat, parameters: {queueDepthThreshold: 7}}
- {type: utilization-detector, name: other}
- {type: openai-parser}
- {type: passthrough-parser}
- {type: metrics-data-source, parameters: {scheme: http, path: /metrics, insecureSkipVerify: false}}
- {type: core-metrics-extractor}
- {type: queue-scorer}
featureGates: [enableLegacyMetrics, dataLayer]
saturationDetector: {pluginRef: sat}
parser: {pluginRef: openai-parser}
requestHandler: {parsers: [{pluginRef: openai-parser}, {pluginRef: passthrough-parser}]}
dataLayer:
  sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: core-metrics-extractor}]}]
"""
    )
    assert config.saturation.name == "sat" and config.saturation.queue_depth_threshold == 7
    assert config.feature_gates == {"enableLegacyMetrics", "dataLayer"}
    assert (config.model_list_path, config.model_list_interval) == ("/v1/models", 5.0)  # poolgate's own poll


@pytest.mark.parametrize(
    ("parameters", "path", "interval"),
    [("{interval: 30s}", "/v1/models", 30.0), ("{path: /models}", "/models", None)],  # None: every scrape
)
def test_a_declared_models_data_source_sets_the_model_list_poll(parameters, path, interval):
    config = load_config(
        HEADER
        + f"""
plugins:
- {{type: models-data-source, name: models, parameters: {parameters}}}
- {{type: models-data-extractor}}
- {{type: queue-scorer}}
dataLayer:
  sources: [{{pluginRef: models, extractors: [{{pluginRef: models-data-extractor}}]}}]
"""
    )
    assert (config.model_list_path, config.model_list_interval) == (path, interval)


def test_prefix_cache_scorer_reads_the_producer_it_names():
    config = load_config(
        HEADER
        + """
plugins:
- {type: approx-prefix-cache-producer, name: approx, parameters: {maxPrefixTokensToMatch: 256, autoTune: false}}
- {type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: approx}}
"""
    )
    scorer = config.profile().scorers[0][0]
    assert scorer.producer.name == "approx" and scorer.producer.max_blocks(64) == 4
    assert scorer.producer in config.profile().plugins()  # so that picks are credited to it


def test_load_aware_scores_queues_against_the_threshold():
    pool = pool_of(
        ("10.0.0.1", None),
        ("10.0.0.2", None),
        ("10.0.0.3", None),
        metrics={"10.0.0.2:8000": (32, 0), "10.0.0.3:8000": (500, 0)},
    )
    scorer = LoadAwareScorer(threshold=128)
    scores = scorer.score(CycleState(SchedulingRequest("m"), 0.0, pool), pool.endpoints())
    assert scores == pytest.approx([0.5, 0.5 * (1 - 32 / 128), 0.0])
    assert (
        load_config(HEADER + "plugins:\n- {type: load-aware-scorer, parameters: {threshold: 0}}\n")
        .profile()
        .scorers[0][0]
        .threshold
        == 128
    )  # as upstream: a non-positive threshold falls back to the default


def test_probabilistic_admitter_sheds_sheddable_requests_with_saturation_probability():
    pool = pool_of(
        ("10.0.0.1", None), ("10.0.0.2", None), metrics={"10.0.0.1:8000": (1, 0.16), "10.0.0.2:8000": (0, 0.16)}
    )
    admitter = ProbabilisticAdmitter(rng=random.Random(1))
    # saturation = mean(max(1/5, 0.16/0.8), max(0/5, 0.16/0.8)) = 0.2; p = min(0.2^5 x 300, 1) = 0.096
    assert admitter.pool_saturation(pool.endpoints()) == pytest.approx(0.2)
    assert admitter.rejection_probability(pool.endpoints()) == pytest.approx(0.096)
    sheddable = SchedulingRequest("m", priority=-1)
    refused = sum(not admitter.admit(sheddable, pool.endpoints(), 0.0) for _ in range(4000)) / 4000
    assert refused == pytest.approx(0.096, abs=0.02)
    assert all(admitter.admit(SchedulingRequest("m", priority=0), pool.endpoints(), 0.0) for _ in range(100))
    config = load_config(HEADER + "plugins: [{type: queue-scorer}, {type: probabilistic-admitter}]\n")
    full = pool_of(("10.0.0.1", None), metrics={"10.0.0.1:8000": (50, 0.99)})
    shed = Scheduler(full, config.profile(), saturation=config.saturation).schedule(sheddable, 0.0)
    assert shed.outcome is Outcome.SHED


PD = """
plugins:
- type: approx-prefix-cache-producer
- type: prefix-cache-scorer
- type: queue-scorer
- type: prefill-filter
- type: decode-filter
- type: max-score-picker
- type: disagg-profile-handler
  parameters: {deciders: {prefill: prefix-based-pd-decider}}
- type: prefix-based-pd-decider
  parameters: {nonCachedTokens: 16}
schedulingProfiles:
- name: prefill
  plugins: [{pluginRef: prefill-filter}, {pluginRef: max-score-picker}, {pluginRef: queue-scorer}]
- name: decode
  plugins: [{pluginRef: decode-filter}, {pluginRef: max-score-picker}, {pluginRef: prefix-cache-scorer, weight: 2},
            {pluginRef: queue-scorer}]
"""


def test_role_filters_follow_the_llm_d_role_label():
    roles = [None, "prefill", "decode", "both", "prefill-decode", "encode", "encode-prefill", "encode-prefill-decode"]
    pool = pool_of(*((f"10.0.0.{i}", role) for i, role in enumerate(roles, start=1)))
    config = load_config(HEADER + PD)
    cycle = CycleState(SchedulingRequest("m"), 0.0, pool)
    decode = config.profile("decode").filters[0].filter(cycle, pool.endpoints())
    prefill = config.profile("prefill").filters[0].filter(cycle, pool.endpoints())
    role_of = dict(zip((e.key for e in pool.endpoints()), roles))
    assert [role_of[e.key] for e in decode] == [None, "decode", "both", "prefill-decode", "encode-prefill-decode"]
    assert [role_of[e.key] for e in prefill] == [
        "prefill",
        "both",
        "prefill-decode",
        "encode-prefill",
        "encode-prefill-decode",
    ]


def test_disaggregation_picks_decode_names_prefill_and_skips_it_once_the_prompt_is_cached():
    pool = pool_of(("10.0.0.1", "prefill"), ("10.0.0.2", "decode"), ("10.0.0.3", "decode"))
    config = load_config(HEADER + PD, random.Random(0))
    assert config.profile().name == "decode" and isinstance(config.profile().handler, DisaggProfileHandler)
    scheduler = Scheduler(pool, config.profile(), fallbacks=0)
    long_prompt = SchedulingRequest("m", PromptInput(b"p" * 400))  # 100 estimated tokens, >= 16
    first = scheduler.schedule(long_prompt, 0.0)
    assert first.primary in ("10.0.0.2:8000", "10.0.0.3:8000")
    assert first.prefill == "10.0.0.1:8000" and first.request_headers == {PREFILLER_HOST_PORT_HEADER: "10.0.0.1:8000"}
    # the decode pod and the prefill pod were both credited with the prompt's blocks
    index = config.profile().scorers[0][0].producer
    assert index.block_count(first.primary) == index.block_count("10.0.0.1:8000") == 2
    again = scheduler.schedule(long_prompt, 0.0)
    assert again.primary == first.primary  # prefix affinity (weight 2) keeps it there
    assert again.prefill is None and again.request_headers == {}  # all but < 16 tokens cached there: no prefill
    short = scheduler.schedule(SchedulingRequest("m", PromptInput(b"q" * 60)), 0.0)  # 15 tokens < 16
    assert short.prefill is None


def test_disaggregation_without_prefill_pods_or_decider_serves_on_the_decode_pod():
    decode_only = pool_of(("10.0.0.2", "decode"))
    config = load_config(HEADER + PD, random.Random(0))
    decision = Scheduler(decode_only, config.profile()).schedule(SchedulingRequest("m", PromptInput(b"p" * 400)), 0.0)
    assert decision.primary == "10.0.0.2:8000" and decision.prefill is None
    no_decider = load_config(HEADER + PD.replace("  parameters: {deciders: {prefill: prefix-based-pd-decider}}\n", ""))
    pool = pool_of(("10.0.0.1", "prefill"), ("10.0.0.2", "decode"))
    decision = Scheduler(pool, no_decider.profile()).schedule(SchedulingRequest("m", PromptInput(b"p" * 400)), 0.0)
    assert decision.primary == "10.0.0.2:8000" and decision.prefill is None


def test_flat_disagg_parameters_are_read_and_cannot_be_mixed_with_nested_ones():
    flat = PD.replace("{deciders: {prefill: prefix-based-pd-decider}}", "{deciderPluginName: prefix-based-pd-decider}")
    handler = load_config(HEADER + flat).profile().handler
    assert handler is not None and handler.decider is not None and handler.decode_profile == "decode"
    mixed = PD.replace("{deciders: {prefill: prefix-based-pd-decider}}", "{deciders: {}, decodeProfile: decode}")
    load_config(HEADER + mixed)  # empty nested parameters are not a mix
    mixed = PD.replace(
        "{deciders: {prefill: prefix-based-pd-decider}}",
        "{deciders: {prefill: prefix-based-pd-decider}, decodeProfile: decode}",
    )
    with pytest.raises(ConfigError, match="not both"):
        load_config(HEADER + mixed)


@pytest.mark.parametrize(
    "picker, fallbacks, expected",
    [
        ("{type: max-score-picker}", None, 1),  # upstream's default: the primary alone
        ("{type: max-score-picker, parameters: {maxNumOfEndpoints: 3}}", None, 3),
        ("{type: max-score-picker, parameters: {maxNumOfEndpoints: 0}}", None, 1),  # below 1 reads as 1
        ("{type: random-picker, parameters: {maxNumOfEndpoints: 2}}", None, 2),
        ("{type: max-score-picker}", 2, 3),  # poolgate's --fallbacks wins over the picker's count
        ("{type: max-score-picker, parameters: {maxNumOfEndpoints: 3}}", 0, 1),
    ],
)
def test_max_num_of_endpoints_sets_the_endpoints_per_pick_unless_fallbacks_are_given(picker, fallbacks, expected):
    config = load_config(HEADER + f"plugins: [{{type: queue-scorer}}, {picker}]\n", random.Random(0))
    pool = pool_of(*((f"10.0.0.{i}", None) for i in range(1, 6)))
    scheduler = Scheduler(pool, config.profile(), fallbacks=fallbacks)
    assert len(scheduler.schedule(SchedulingRequest("m"), 0.0).endpoints) == expected


def test_the_built_in_profiles_pick_as_their_pickers_say():
    pool = pool_of(*((f"10.0.0.{i}", None) for i in range(1, 6)))
    for name, expected in (("llmd-default", 1), ("poolgate-default", 3)):  # as upstream / primary + 2 fallbacks
        scheduler = Scheduler(pool, builtin_config(name).profile())
        assert len(scheduler.schedule(SchedulingRequest("m"), 0.0).endpoints) == expected, name
        scheduler.close()


def test_flow_control_gives_the_saturation_detector_and_its_other_settings_are_ignored_without_the_gate(caplog):
    plugins = "plugins: [{type: utilization-detector, name: new}, {type: utilization-detector, name: old}]\n"
    with caplog.at_level("WARNING", logger="poolgate.picker"):
        config = load_config(
            HEADER
            + plugins
            + "featureGates: [flowControl=false, dataLayer]\n"
            + "saturationDetector: {pluginRef: old}\n"  # deprecated: the flowControl field wins
            + "flowControl: {saturationDetector: {pluginRef: new}, maxRequests: 10, defaultRequestTTL: 30s}\n"
        )
    assert config.saturation.name == "new" and config.feature_gates == {"dataLayer"}
    (warning,) = [r for r in caplog.records if "flowControl settings ignored" in r.getMessage()]
    assert warning.settings == ["defaultRequestTTL", "maxRequests"]
    assert load_config(HEADER + plugins + "saturationDetector: {pluginRef: old}\n").saturation.name == "old"
