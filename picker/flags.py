"""The upstream endpoint picker's command line (llm-d router v0.10, pflag syntax) as `poolgate picker` accepts it.

The upstream Helm chart's argument list must start `poolgate picker` unchanged, so every upstream flag is accepted with
upstream's default and syntax: booleans as `--flag`, `--flag=true` or `--flag=false`; values as `--flag value` or
`--flag=value`; durations as Go durations (`50ms`, `5s`); `-v N`; controller-runtime's `--zap-*` flags. Flags that
poolgate acts on are defined in `picker.cli`; the others (`UNUSED_FLAGS`) are accepted and named once at start by
`unused_flag_report`, with why poolgate does not act on them, so no behaviour differs silently.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

_TRUE = ("true", "t", "1")
_FALSE = ("false", "f", "0")


def pflag_bool(text: str) -> bool:
    """A boolean value as Go's strconv.ParseBool reads it (true/false, t/f, 1/0, any case)."""
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def add_bool(group, flag: str, default: bool | None, help_text: str) -> None:
    """A pflag-style boolean: `--flag` sets it, `--flag=true|false` says which."""
    group.add_argument(flag, nargs="?", const=True, default=default, type=pflag_bool, metavar="BOOL", help=help_text)


@dataclass(frozen=True)
class UnusedFlag:
    """An upstream flag poolgate accepts but does not act on."""

    flag: str
    default: object  # upstream's default (bool flags: True means the default asks for the feature)
    reason: str  # what poolgate does instead
    feature: bool = True  # a boolean whose true value asks for a feature poolgate lacks (reported even by default)

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)


_DEPRECATED_METRIC = (
    "deprecated upstream (engineConfigs replace it); poolgate reads the vLLM, SGLang and TensorRT-LLM names itself"
)
_DATA_LAYER = "deprecated upstream; poolgate scrapes each endpoint's /metrics over HTTP on its target port"

UNUSED_FLAGS: tuple[UnusedFlag, ...] = (
    UnusedFlag(
        "--ha-enable-leader-election",
        False,
        "every replica serves; no leader election (replicas share their load with --load-exchange-peers)",
    ),
    UnusedFlag("--health-checking", False, "gRPC health is always served"),
    UnusedFlag("--enable-pprof", True, "no profiling endpoint (pprof is Go-only)"),
    UnusedFlag("--enable-grpc-stream-metrics", False, "no per-stream gRPC metrics"),
    UnusedFlag("--tracing", True, "no OpenTelemetry traces"),
    UnusedFlag("--allow-experimental-plugins", False, "the plugin registry has no experimental tier"),
    UnusedFlag("--emit-endpoint-scores", False, "x-gateway-destination-endpoint-scores is not sent"),
    UnusedFlag("--disable-endpoint-subset-filter", False, "the proxy's subset hint is always honoured"),
    UnusedFlag("--enable-cert-reload", False, "--cert-path is read once at start"),
    UnusedFlag("--tls-min-version", "", "TLS versions are grpcio's (1.2 and 1.3)"),
    UnusedFlag("--tls-cipher-suites", "", "cipher suites are grpcio's defaults"),
    UnusedFlag("--metrics-cert-dir", "", "/metrics is served over plain HTTP"),
    UnusedFlag("--metrics-client-ca-file", "", "/metrics is served over plain HTTP"),
    UnusedFlag("--drain-timeout", "30s", "streams in flight get 2 s at shutdown"),
    UnusedFlag("--grpc-max-recv-msg-size", 0, "grpcio's limits; request bodies are capped by --max-body-bytes"),
    UnusedFlag("--grpc-max-send-msg-size", 0, "grpcio's limits"),
    UnusedFlag("--refresh-prometheus-metrics-interval", "5s", "pool gauges are computed when /metrics is scraped"),
    UnusedFlag("--metrics-staleness-threshold", "2s", "staleness is the stale-metrics-filter's own parameter"),
    UnusedFlag("--model-server-metrics-port", 0, _DATA_LAYER),
    UnusedFlag("--model-server-metrics-path", "/metrics", _DATA_LAYER),
    UnusedFlag("--model-server-metrics-scheme", "http", _DATA_LAYER),
    UnusedFlag("--model-server-metrics-https-insecure-skip-verify", True, _DATA_LAYER, feature=False),
    UnusedFlag("--total-queued-requests-metric", "vllm:num_requests_waiting", _DEPRECATED_METRIC),
    UnusedFlag("--total-running-requests-metric", "vllm:num_requests_running", _DEPRECATED_METRIC),
    UnusedFlag("--kv-cache-usage-percentage-metric", "vllm:kv_cache_usage_perc", _DEPRECATED_METRIC),
    UnusedFlag("--lora-info-metric", "vllm:lora_requests_info", _DEPRECATED_METRIC),
    UnusedFlag("--cache-info-metric", "vllm:cache_config_info", _DEPRECATED_METRIC),
    UnusedFlag("--zap-devel", True, "log lines are poolgate's JSON or text lines", feature=False),
    UnusedFlag("--zap-stacktrace-level", "", "tracebacks are logged with errors"),
    UnusedFlag("--zap-time-encoding", "", "log times are ISO 8601 UTC"),
)


def add_unused_flags(parser: argparse.ArgumentParser) -> None:
    """Add the upstream flags poolgate accepts without acting on them."""
    group = parser.add_argument_group(
        "upstream flags accepted but not acted on (each is named once in the start log, with the reason)"
    )
    for unused in UNUSED_FLAGS:
        help_text = f"(upstream default {unused.default!r}) {unused.reason}"
        if unused.is_bool:
            add_bool(group, unused.flag, None, help_text)
        else:
            group.add_argument(unused.flag, default=None, metavar="VALUE", help=help_text)


def unused_flag_report(args: argparse.Namespace) -> dict[str, str]:
    """The upstream flags whose value asks for something poolgate does not do: each given one, and each boolean
    whose upstream default turns a feature on (e.g. --enable-pprof, --tracing); flag -> reason."""
    report = {}
    for unused in UNUSED_FLAGS:
        value = getattr(args, unused.dest)
        if value is None:
            value = unused.default if unused.is_bool and unused.feature else None
        if value is not None and value is not False:
            report[unused.flag] = unused.reason
    return report
