"""The pickers the routing benchmark compares, all real EndpointPickerConfig profiles run by the picker's scheduler.

| picker | profile | stands for |
|---|---|---|
| `round-robin` | `round-robin-picker` | a plain Kubernetes Service (kube-proxy / Envoy round robin) |
| `random` | `random-picker` | random load balancing |
| `least-request` | `active-request-scorer` + `max-score-picker` | Envoy's least-request balancing on the gateway's own in-flight counts |
| `llmd-default` | built-in `llmd-default` | the llm-d router's default profile (queue 2, KV 2, prefix 3) |
| `llmd-precise` | upstream's `epp-precise-prefix-cache-config.yaml` (llm-d router v0.10) | the llm-d router fed by the engines' KV events: precise prefix 2, KV 1, queue 1 |
| `poolgate` | built-in `poolgate-default` | poolgate's default profile |
| `soonest` | none: `fleet.SoonestFirstToken` | an achievable reference: reads every server's exact state and sends each request where its first token comes soonest (asked for by name only) |
| `oracle` | none: computed (see `oracle.py`) | a lower bound: no queueing, every reusable prefix cached |
| `pooled` | none: computed (see `oracle.py`) | the oracle with the fleet's batch-slot limit: its slots shared as one first-come-first-served pool |

Other profiles can join a run from EndpointPickerConfig files (`--config NAME=FILE`).

`llmd-precise` is upstream's sample config as published, but for its `token-producer`: upstream's asks a vLLM
server's `/tokenize` (at a placeholder URL); here no server listens, so it estimates, and the precise producer is
given the simulated servers' own tokenization (`fleet.ServerTokenizer`) and fed their KV events in order
(`fleet.IndexFeed`), as any config with a `precise-prefix-cache-producer` is (`poolgate` too).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from picker.scheduling import PickerConfig
    from poolgate.bench.routing.fleet import SoonestFirstToken

ORACLE, POOLED, SOONEST = "oracle", "pooled", "soonest"
BOUNDS = (ORACLE, POOLED)  # computed, not routed
PICKERS = (
    "round-robin",
    "random",
    "least-request",
    "llmd-default",
    "llmd-precise",
    "poolgate",
    SOONEST,
    POOLED,
    ORACLE,
)
# what a run compares unless told: all but `soonest`, whose forecasts replay every server's queue (a case at load
# 1.15 costs it ~5x a profile's CPU)
DEFAULT_PICKERS = tuple(picker for picker in PICKERS if picker != SOONEST)

_HEADER = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
BASELINE_CONFIGS = {
    "round-robin": _HEADER + "plugins:\n- type: round-robin-picker\n",
    "random": _HEADER + "plugins:\n- type: random-picker\n",
    "least-request": _HEADER + "plugins:\n- type: active-request-scorer\n- type: max-score-picker\n",
}
# upstream's epp-precise-prefix-cache-config.yaml (llm-d router v0.10), its token-producer estimating (see above)
LLMD_PRECISE = (
    _HEADER
    + """plugins:
- type: token-producer
  parameters: {backend: estimate}
- type: endpoint-notification-source
- type: metrics-data-source
- type: core-metrics-extractor
- type: single-profile-handler
- type: decode-filter
- type: precise-prefix-cache-producer
  parameters:
    tokenProcessorConfig: {blockSize: 64}
    indexerConfig: {kvBlockIndexConfig: {enableMetrics: true}}
- type: prefix-cache-scorer
  parameters: {prefixMatchInfoProducerName: precise-prefix-cache-producer}
- type: kv-cache-utilization-scorer
- type: queue-scorer
- type: max-score-picker
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors: [{pluginRef: core-metrics-extractor}]
  - pluginRef: endpoint-notification-source
    extractors: [{pluginRef: precise-prefix-cache-producer}]
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: prefix-cache-scorer
    weight: 2.0
  - pluginRef: kv-cache-utilization-scorer
    weight: 1.0
  - pluginRef: queue-scorer
    weight: 1.0
  - pluginRef: max-score-picker
"""
)
BASELINE_CONFIGS["llmd-precise"] = LLMD_PRECISE
BUILTIN_PROFILES = {"llmd-default": "llmd-default", "poolgate": "poolgate-default"}


def picker_rng(seed: int, replica: int = 0) -> random.Random:
    """The random source of a picker (replica) in a run at `seed` (tie breaks, random picks). Every picker of the
    run draws from the same source (common random numbers), so that two profiles' rows at a seed differ only by
    what the profiles decide: a `--config` variant that never decides otherwise gives the built-in's row."""
    return random.Random(f"picker/{seed}" + (f"/{replica}" if replica else ""))


def build_router(
    picker: str, seed: int, extra_configs: dict[str, str] | None = None, replicas: int = 1
) -> tuple[PickerConfig | SoonestFirstToken, list[PickerConfig]]:
    """What routes a case: the named picker's config and those of its `replicas - 1` other replicas, or the
    `soonest` reference (which has no replicas)."""
    from poolgate.bench.routing.fleet import SoonestFirstToken

    if picker == SOONEST:
        return SoonestFirstToken(), []
    configs = [build_picker(picker, seed, extra_configs, replica) for replica in range(replicas)]
    return configs[0], configs[1:]


def build_picker(picker: str, seed: int, extra_configs: dict[str, str] | None = None, replica: int = 0) -> PickerConfig:
    """A fresh config (own prefix index, own RNG) for a named picker, or for its replica number `replica`;
    `extra_configs` maps more names to YAML."""
    from picker.scheduling import builtin_config, load_config

    rng = picker_rng(seed, replica)
    if extra_configs and picker in extra_configs:
        return load_config(extra_configs[picker], rng)
    if picker in BASELINE_CONFIGS:
        return load_config(BASELINE_CONFIGS[picker], rng)
    if picker in BUILTIN_PROFILES:
        return builtin_config(BUILTIN_PROFILES[picker], rng)
    raise ValueError(f"unknown picker {picker!r}; choose from {', '.join(PICKERS)} or add one with --config")
