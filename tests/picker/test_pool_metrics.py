"""Engine metric mappings: label choice, sample reading and Prometheus text parsing."""

from pathlib import Path
from urllib.parse import parse_qs

import pytest
from prometheus_client.samples import Sample

from picker.pool.metrics import (
    ENGINES,
    MetricsError,
    engine_name,
    metrics_query,
    parse_metrics_text,
    read_metrics_text,
    read_samples,
)


def s(name, value, **labels):
    return Sample(name, labels, value, None, None)


def test_engine_label_prefers_llmd_label_then_legacy_then_vllm():
    both = {"llm-d.ai/engine-type": "sglang", "inference.networking.k8s.io/engine-type": "vllm"}
    assert engine_name(both) == "sglang"
    assert engine_name({"inference.networking.k8s.io/engine-type": "trtllm-serve"}) == "trtllm-serve"
    assert engine_name({}) == "vllm"
    assert engine_name({"llm-d.ai/engine-type": "no-such-engine"}) == "vllm"


def test_vllm_reading_with_cache_geometry_and_newest_lora_series():
    reading = read_samples(
        ENGINES["vllm"],
        [
            s("vllm:num_requests_waiting", 3.0, model_name="m"),
            s("vllm:num_requests_running", 7.0, model_name="m"),
            s("vllm:kv_cache_usage_perc", 0.42),
            s("vllm:cache_config_info", 1.0, block_size="16", num_gpu_blocks="2048"),
            s(
                "vllm:lora_requests_info",
                1.7e9 + 2,
                max_lora="4",
                running_lora_adapters="b, c",
                waiting_lora_adapters="",
            ),
            s("vllm:lora_requests_info", 1.7e9 + 1, max_lora="2", running_lora_adapters="a", waiting_lora_adapters="x"),
            s("vllm:prefix_cache_hits_total", 99.0),
        ],
    )
    assert (reading.waiting, reading.running, reading.kv_usage) == (3, 7, 0.42)
    assert (reading.block_size, reading.num_gpu_blocks) == (16, 2048)
    assert reading.lora.max_lora == 4
    assert reading.lora.running == frozenset({"b", "c"}) and reading.lora.waiting == frozenset()


def test_vllm_falls_back_to_gpu_cache_usage_perc():
    reading = read_samples(
        ENGINES["vllm"],
        [s("vllm:num_requests_waiting", 0), s("vllm:num_requests_running", 1), s("vllm:gpu_cache_usage_perc", 0.25)],
    )
    assert reading.kv_usage == 0.25
    assert reading.block_size is None and reading.lora is None


def test_new_kv_name_wins_over_old_one():
    reading = read_samples(
        ENGINES["vllm"],
        [
            s("vllm:num_requests_waiting", 0),
            s("vllm:num_requests_running", 0),
            s("vllm:gpu_cache_usage_perc", 0.9),
            s("vllm:kv_cache_usage_perc", 0.1),
        ],
    )
    assert reading.kv_usage == 0.1


def test_sglang_and_trtllm_names():
    sglang = read_samples(
        ENGINES["sglang"],
        [
            s("sglang:num_queue_reqs", 2),
            s("sglang:num_running_reqs", 5),
            s("sglang:token_usage", 0.5),
            s("sglang:cache_config_info", 1, page_size="1", num_pages="9000"),
        ],
    )
    assert (sglang.waiting, sglang.running, sglang.kv_usage) == (2, 5, 0.5)
    assert (sglang.block_size, sglang.num_gpu_blocks) == (1, 9000)
    trt = read_samples(
        ENGINES["trtllm-serve"],
        [
            s("trtllm_num_requests_waiting", 1),
            s("trtllm_num_requests_running", 4),
            s("trtllm_kv_cache_utilization", 0.75),
            s("trtllm_kv_cache_tokens_per_block", 32),
            s("trtllm_kv_cache_max_blocks", 5000),
        ],
    )
    assert (trt.waiting, trt.running, trt.kv_usage, trt.block_size, trt.num_gpu_blocks) == (1, 4, 0.75, 32, 5000)


def test_missing_core_metric_is_an_error_naming_it():
    with pytest.raises(MetricsError, match="vllm:num_requests_running"):
        read_samples(ENGINES["vllm"], [s("vllm:num_requests_waiting", 0), s("vllm:kv_cache_usage_perc", 0.1)])
    with pytest.raises(MetricsError, match="kv_cache_usage_perc or vllm:gpu_cache_usage_perc"):
        read_samples(ENGINES["vllm"], [s("vllm:num_requests_waiting", 0), s("vllm:num_requests_running", 0)])


def test_negative_or_nan_counts_are_rejected():
    with pytest.raises(MetricsError):
        read_samples(
            ENGINES["vllm"],
            [s("vllm:num_requests_waiting", -1), s("vllm:num_requests_running", 0), s("vllm:kv_cache_usage_perc", 0.0)],
        )
    with pytest.raises(MetricsError):
        read_samples(
            ENGINES["vllm"],
            [
                s("vllm:num_requests_waiting", float("nan")),
                s("vllm:num_requests_running", 0),
                s("vllm:kv_cache_usage_perc", 0.0),
            ],
        )


def test_infinite_counts_and_nan_kv_usage_are_rejected_not_crashing():
    """A pod answering `vllm:num_requests_waiting 1e999` once made the reading raise OverflowError (a scraper crash
    logged with a traceback on every scrape) instead of a MetricsError."""
    for waiting, kv in ((float("inf"), 0.0), (0, float("nan"))):
        with pytest.raises(MetricsError, match="invalid value"):
            read_samples(
                ENGINES["vllm"],
                [
                    s("vllm:num_requests_waiting", waiting),
                    s("vllm:num_requests_running", 0),
                    s("vllm:kv_cache_usage_perc", kv),
                ],
            )
    with pytest.raises(MetricsError, match="invalid value"):
        read_samples(
            ENGINES["vllm"],
            parse_metrics_text(
                ENGINES["vllm"],
                ("vllm:num_requests_waiting 1e999\nvllm:num_requests_running 0\nvllm:kv_cache_usage_perc 0.5\n"),
            ),
        )


VLLM_TEXT = """\
# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llama"} 4.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 9.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 2.0
vllm:kv_cache_usage_perc{model_name="llama"} 0.5
vllm:time_to_first_token_seconds_bucket{le="0.1"} 3.0
vllm:cache_config_info{block_size="16",num_gpu_blocks="1000"} 1.0
vllm:lora_requests_info{max_lora="1",running_lora_adapters="sql",waiting_lora_adapters=""} 1.7e+09
"""


def test_parse_text_keeps_only_mapped_series():
    samples = parse_metrics_text(ENGINES["vllm"], VLLM_TEXT)
    names = {sample.name for sample in samples}
    assert "vllm:time_to_first_token_seconds_bucket" not in names
    reading = read_samples(ENGINES["vllm"], samples)
    assert (reading.waiting, reading.running, reading.kv_usage, reading.num_gpu_blocks) == (4, 2, 0.5, 1000)
    assert reading.lora.running == frozenset({"sql"})


def test_garbage_text_yields_no_reading():
    samples = parse_metrics_text(ENGINES["vllm"], "<html>not metrics</html>\n\x00\x01")
    with pytest.raises(MetricsError):
        read_samples(ENGINES["vllm"], samples)
    with pytest.raises(MetricsError):
        parse_metrics_text(ENGINES["vllm"], 'vllm:num_requests_waiting{model_name="x"} notanumber\n')


CAPTURED = (Path(__file__).parents[1] / "simulator" / "data" / "vllm-0.32-cpu-metrics.txt").read_text()
LORA_SERIES = (
    "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
    "# TYPE vllm:lora_requests_info gauge\n"
    'vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql,chat",waiting_lora_adapters=""} 1.79e+09\n'
    'vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql",waiting_lora_adapters="x\\"y"} 1.8e+09\n'
)


def test_the_captured_vllm_page_yields_exactly_the_mapped_series_with_their_labels():
    """A real vLLM page (644 lines, mostly histograms) plus LoRA series: only the mapped lines come out, whole."""
    page = CAPTURED.replace(
        'vllm:num_requests_waiting{engine="0",model_name="tiny"} 0.0',
        'vllm:num_requests_waiting{engine="0",model_name="tiny"} 7.0',
    )
    samples = parse_metrics_text(ENGINES["vllm"], page + LORA_SERIES)
    assert [sample.name for sample in samples] == [  # in the page's order
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",  # not vllm:num_requests_waiting_by_reason, whose name begins alike
        "vllm:kv_cache_usage_perc",
        "vllm:cache_config_info",
        "vllm:lora_requests_info",
        "vllm:lora_requests_info",
    ]
    _, waiting, _, cache, old_lora, new_lora = samples
    assert (waiting.labels, waiting.value) == ({"engine": "0", "model_name": "tiny"}, 7.0)
    assert cache.labels["block_size"] == "128" and cache.labels["num_gpu_blocks"] == "8192"
    assert len(cache.labels) == CAPTURED.split("vllm:cache_config_info{", 1)[1].split("}", 1)[0].count('="')
    assert old_lora.labels["running_lora_adapters"] == "sql,chat"
    assert (new_lora.labels["waiting_lora_adapters"], new_lora.value) == ('x"y', 1.8e9)  # escapes undone
    reading = read_samples(ENGINES["vllm"], samples)
    assert (reading.waiting, reading.running, reading.kv_usage, reading.block_size) == (7, 0, 0.0, 128)
    assert reading.lora.running == frozenset({"sql"}) and reading.lora.waiting == frozenset({'x"y'})


def test_the_line_filter_reads_timestamps_crlf_and_a_page_that_starts_with_a_mapped_line():
    text = (
        "vllm:num_requests_waiting 3 1700000000000\r\n"
        'vllm:num_requests_running{a="}",b="c\\\\d"} 2.5e0\r\n'
        "vllm:kv_cache_usage_perc NaN\r\n"
    )
    waiting, running, kv = parse_metrics_text(ENGINES["vllm"], text)
    assert (waiting.labels, waiting.value) == ({}, 3.0)
    assert (running.labels, running.value) == ({"a": "}", "b": "c\\d"}, 2.5)
    assert kv.value != kv.value  # NaN, refused later by read_samples


def test_malformed_mapped_lines_are_errors_and_other_lines_are_not_looked_at():
    good = "vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n"
    garbage_elsewhere = "vllm:other{{{ not prometheus at all\n\x00\x01\nvllm:num_requests_waiting 2\n" + good
    assert len(parse_metrics_text(ENGINES["vllm"], garbage_elsewhere)) == 3
    for line in (
        'vllm:num_requests_waiting{model_name="x} 1',  # unterminated label value
        "vllm:num_requests_waiting{model_name=x} 1",  # unquoted
        'vllm:num_requests_waiting{model_name="x"}1',  # no space before the value
        "vllm:num_requests_waiting 1 2 3",
    ):
        with pytest.raises(MetricsError, match="vllm:num_requests_waiting"):
            parse_metrics_text(ENGINES["vllm"], line + "\n" + good)
    with pytest.raises(MetricsError, match="missing: vllm:num_requests_waiting"):  # a bare name is no sample
        read_samples(ENGINES["vllm"], parse_metrics_text(ENGINES["vllm"], "vllm:num_requests_waiting\n" + good))


SGLANG_TEXT = (
    'sglang:num_queue_reqs{model_name="m"} 2\nsglang:num_running_reqs 5\nsglang:token_usage 0.5\n'
    'sglang:cache_config_info{num_pages="0",page_size="1"} 1\nsglang:page_size 16\nsglang:num_pages 9000\n'
)
TRTLLM_TEXT = (
    "trtllm_num_requests_waiting 1\ntrtllm_num_requests_running 4\ntrtllm_kv_cache_utilization 1.5\n"
    "trtllm_kv_cache_tokens_per_block 32\ntrtllm_kv_cache_max_blocks 5000\ntrtllm_num_requests_waiting_total 9\n"
)


def test_the_scrapers_reading_of_the_bytes_is_what_the_samples_read():
    """`read_metrics_text` (the scraper's: each line's part worked out once) reads every engine's text as
    `read_samples(parse_metrics_text(...))` does, from a fresh line and from a remembered one, errors included."""
    good = "vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0.5\n"
    cases = [
        ("vllm", CAPTURED + LORA_SERIES),
        ("vllm", VLLM_TEXT.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")),  # the old KV name
        ("vllm", "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\nvllm:num_requests_waiting 3\n" + good),
        ("vllm", "vllm:num_requests_waiting 2\nvllm:num_requests_waiting NaN\n" + good),  # a later series: unused
        ("vllm", "vllm:num_requests_waiting NaN\n" + good),
        ("vllm", "vllm:num_requests_waiting -1\n" + good),
        ("vllm", "vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0.5\n"),
        ("sglang", SGLANG_TEXT),
        ("trtllm-serve", TRTLLM_TEXT),
    ]
    for engine, text in cases:
        names = ENGINES[engine]
        try:
            expected: object = read_samples(names, parse_metrics_text(names, text))
        except MetricsError as error:
            expected = str(error)
        for _ in range(2):  # the second time from the remembered lines
            try:
                got: object = read_metrics_text(names, text.encode())
            except MetricsError as error:
                got = str(error)
            assert got == expected, (engine, text[:80])
    assert read_metrics_text(ENGINES["sglang"], SGLANG_TEXT.encode())[3:5] == (1, 9000)  # a 0 label: its gauge
    assert read_metrics_text(ENGINES["trtllm-serve"], TRTLLM_TEXT.encode()).kv_usage == 1.0  # clamped


def test_metrics_query_names_every_mapped_metric_url_encoded():
    query = metrics_query(ENGINES["vllm"])
    assert query.startswith("name%5B%5D=vllm%3Anum_requests_waiting&")
    assert parse_qs(query)["name[]"] == list(ENGINES["vllm"].names())
