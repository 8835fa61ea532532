"""Real vLLM (CPU build, from `make vllm-venv`) serving a tiny model made locally (tiny_model.py): two processes on
their own loopback addresses, started once for the whole suite and shared by its tests.

Every test module of this suite is in the xdist group `vllm`, so one worker runs them all and the pair starts once.
When vLLM is not installed the suite fails (never skips), saying what is missing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.vllm.servers import ADAPTER, HOSTS, TINY_MODEL_DIR, VllmServer, server_args, vllm_python


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny model and its LoRA adapter (made once, kept in the vLLM virtualenv's directory)."""
    python = vllm_python()
    maker = Path(__file__).with_name("tiny_model.py")
    result = subprocess.run(
        [str(python), str(maker), str(TINY_MODEL_DIR)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"making the tiny model failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
    return TINY_MODEL_DIR


@pytest.fixture(scope="session")
def vllm_pair(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[VllmServer]]:
    """Two real vLLM servers (the first with the LoRA adapter loaded), sharing the machine's cores."""
    log_dir = tmp_path_factory.mktemp("vllm-logs")
    threads = (os.cpu_count() or 1) // len(HOSTS)
    servers = [
        VllmServer(
            f"vllm-{index}",
            host,
            server_args(tiny_model, {ADAPTER: tiny_model / "lora"} if index == 0 else {}),
            threads,
            log_dir,
        )
        for index, host in enumerate(HOSTS)
    ]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        print(f"vLLM pair ready: start took {[round(s.start_seconds[0], 1) for s in servers]} s")
        yield servers
    finally:
        for server in servers:
            server.stop()
