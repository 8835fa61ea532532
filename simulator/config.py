"""The parameters of a simulated server: identity, capacity and latency (defaults: an 8B model on one H100).

See docs/simulator.md for how the defaults were calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ENGINES = ("vllm", "sglang")
METRICS_FAULTS = ("none", "hang", "garbage")  # fault injection on /metrics (`poolgate sim --metrics-fault`)
METRICS_FAULT_PATH = "/sim/metrics-fault"  # GET: scrape counts; PUT {"mode": ...}: switch the fault


@dataclass(frozen=True)
class ServerConfig:
    """Identity, capacity and latency parameters of a simulated server (defaults: an 8B model on one H100)."""

    model: str = DEFAULT_MODEL
    engine: str = "vllm"  # which metric names to expose: "vllm" or "sglang"
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    num_gpu_blocks: int = 28_000
    max_model_len: int = 131_072
    max_loras: int = 4
    prefix_caching: bool = True
    prefill_overhead: float = 0.030  # seconds per step that computes prompt tokens
    prefill_per_token: float = 0.00025  # seconds per uncached prompt token
    decode_step: float = 0.012  # seconds per decode step at batch size 1
    full_batch_slowdown: float = 2.0  # decode step time factor at batch size max_num_seqs
    lora_load: float = 0.050  # seconds to load an adapter that is not resident
    tokenizer: str | None = None  # tokenizer.json (or a directory with one): prompts in its tokens
    kv_events_endpoint: str | None = None  # ZMQ endpoint of vLLM-format KV-cache events (simulator.kvevents)
    kv_events_topic: str | None = None  # their topic (default: kv@<server name>@<model>)
    kv_events_interface: str | None = None  # the address a `*` endpoint binds (None: every interface)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_gpu_blocks", "max_model_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be at least max_num_seqs")
        if self.max_loras < 0:
            raise ValueError("max_loras must not be negative")
        for name in ("prefill_overhead", "prefill_per_token", "decode_step", "lora_load"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.full_batch_slowdown < 1:
            raise ValueError("full_batch_slowdown must be at least 1")
        if self.kv_events_endpoint and not self.tokenizer:
            raise ValueError("kv_events_endpoint needs a tokenizer: KV events carry the prompt's token ids")

    def without_latency(self) -> ServerConfig:
        """The same server answering as fast as the event loop allows (all time costs zero)."""
        return replace(self, prefill_overhead=0.0, prefill_per_token=0.0, decode_step=0.0, lora_load=0.0)

    def decode_step_time(self, batch: int) -> float:
        """Seconds for one decode step of `batch` sequences."""
        if self.max_num_seqs == 1:
            return self.decode_step
        return self.decode_step * (1 + (batch - 1) / (self.max_num_seqs - 1) * (self.full_batch_slowdown - 1))
