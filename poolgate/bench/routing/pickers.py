"""The pickers the routing benchmark compares, all real EndpointPickerConfig profiles run by the picker's scheduler.

| picker | profile | stands for |
|---|---|---|
| `round-robin` | `round-robin-picker` | a plain Kubernetes Service (kube-proxy / Envoy round robin) |
| `random` | `random-picker` | random load balancing |
| `least-request` | `active-request-scorer` + `max-score-picker` | Envoy's least-request balancing on the gateway's own in-flight counts |
| `llmd-default` | built-in `llmd-default` | the llm-d router's default profile (queue 2, KV 2, prefix 3) |
| `poolgate` | built-in `poolgate-default` | poolgate's default profile |
| `oracle` | none: computed (see `oracle.py`) | a lower bound: no queueing, every reusable prefix cached |

Other profiles can join a run from EndpointPickerConfig files (`--config NAME=FILE`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from picker.scheduling import PickerConfig

ORACLE = "oracle"
PICKERS = ("round-robin", "random", "least-request", "llmd-default", "poolgate", ORACLE)

_HEADER = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
BASELINE_CONFIGS = {
    "round-robin": _HEADER + "plugins:\n- type: round-robin-picker\n",
    "random": _HEADER + "plugins:\n- type: random-picker\n",
    "least-request": _HEADER + "plugins:\n- type: active-request-scorer\n- type: max-score-picker\n",
}
BUILTIN_PROFILES = {"llmd-default": "llmd-default", "poolgate": "poolgate-default"}


def picker_rng(picker: str, seed: int) -> random.Random:
    """The random source of one picker in one run (tie breaks, random picks)."""
    return random.Random(f"picker/{picker}/{seed}")


def build_picker(picker: str, seed: int, extra_configs: dict[str, str] | None = None) -> PickerConfig:
    """A fresh config (own prefix index, own RNG) for a named picker; `extra_configs` maps more names to YAML."""
    from picker.scheduling import builtin_config, load_config

    rng = picker_rng(picker, seed)
    if extra_configs and picker in extra_configs:
        return load_config(extra_configs[picker], rng)
    if picker in BASELINE_CONFIGS:
        return load_config(BASELINE_CONFIGS[picker], rng)
    if picker in BUILTIN_PROFILES:
        return builtin_config(BUILTIN_PROFILES[picker], rng)
    raise ValueError(f"unknown picker {picker!r}; choose from {', '.join(PICKERS)} or add one with --config")
