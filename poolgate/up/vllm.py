"""Real vLLM model servers on loopback: how a container that runs vLLM becomes a local process.

A container runs vLLM when its image is `vllm/vllm-openai` (any registry, any tag; the image's entrypoint is
`vllm serve`) or when its command and args say `vllm serve MODEL ...` or `python -m vllm.entrypoints.openai.api_server`.
Its arguments are kept, with the model given as `--model`, and `--host` / `--port` set to the pod's loopback address;
the local process is `python -m vllm.entrypoints.openai.api_server` of the vLLM virtualenv (`vllm serve` does not
work in the CPU build installed from PyPI). Relative model and adapter paths are relative to where poolgate runs.

The vLLM virtualenv is `$POOLGATE_VLLM_PYTHON` if set, else `.venv-vllm/bin/python` of the working directory or of
the poolgate checkout (`make vllm-venv` creates it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from poolgate.api.core import Container

API_SERVER = "vllm.entrypoints.openai.api_server"
IMAGE = "vllm/vllm-openai"
PYTHON_ENV = "POOLGATE_VLLM_PYTHON"
VENV = ".venv-vllm"
HEALTH_PATH = "/health"
READY_TIMEOUT = 600.0  # seconds: a CPU vLLM needs 30-70 s to start on an idle machine, minutes on a busy one
# Environment of every local vLLM: nothing downloaded, a small CPU KV cache, adapters loadable at run time.
BASE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
_SERVER_FLAGS = ("--host", "--port")  # set by poolgate, dropped from the container's arguments


class VllmArgsError(ValueError):
    """A vLLM container whose arguments do not name a model."""


def runs_vllm(container: Container) -> bool:
    """Whether a container runs vLLM's OpenAI server (its image, `vllm serve`, or the api_server module)."""
    image = _image_name(container.image)
    if image == IMAGE or image.endswith("/" + IMAGE):
        return True
    words = container.command + container.args
    return _serve_index(words) is not None or API_SERVER in words


def server_args(container: Container) -> tuple[str, ...]:
    """The api_server arguments of a vLLM container: `--model MODEL` first, its other flags kept, host and port
    dropped. VllmArgsError when no model is named."""
    words = container.command + container.args
    serve = _serve_index(words)
    if serve is not None:
        words = words[serve + 2 :]
    elif API_SERVER in words:
        words = words[words.index(API_SERVER) + 1 :]
    # else: the image's entrypoint (`vllm serve`) takes the args as they are
    model: str | None = None
    rest: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        flag, has_value, value = word.partition("=")
        if flag in _SERVER_FLAGS or flag == "--model":
            if not has_value:
                index += 1
                value = words[index] if index < len(words) else ""
            if flag == "--model":
                model = value
        elif model is None and not word.startswith("-") and not rest:
            model = word  # `vllm serve MODEL`: the positional model tag
        else:
            rest.append(word)
        index += 1
    if not model:
        raise VllmArgsError(f"container {container.name!r}: the vLLM arguments name no model (`vllm serve MODEL`)")
    return ("--model", model, *rest)


def python_executable() -> Path | None:
    """The Python of the vLLM virtualenv, or None when there is none (see the module docstring)."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        return Path(configured)
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / VENV / "bin" / "python"
        if candidate.exists():
            return candidate
    return None


def server_argv(python: Path, host: str, port: int, args: Sequence[str]) -> tuple[str, ...]:
    """The command line of a local vLLM OpenAI server listening on host:port with `args` (see `server_args`)."""
    return (str(python), "-m", API_SERVER, "--host", host, "--port", str(port), *args)


def server_env(threads: int = 1) -> dict[str, str]:
    """The environment of a local vLLM whose engine computes on `threads` OpenMP threads, not pinned to cores.

    vLLM's CPU worker polls for work with sched_yield() for a second after each step; pinned to a core
    (VLLM_CPU_OMP_THREADS_BIND=N), that spinner starved a starting process held on the same core for minutes
    (docs/vllm.md), so the engines float and the kernel balances them.
    """
    return {**BASE_ENV, "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(max(1, threads))}


def _image_name(image: str) -> str:
    """An image reference without its tag and digest: `docker.io/vllm/vllm-openai:v0.32.0` -> `docker.io/vllm/vllm-openai`."""
    head, _, last = image.split("@", 1)[0].rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _serve_index(words: Sequence[str]) -> int | None:
    """Index of `vllm` in `vllm serve ...` (also as a path such as /usr/bin/vllm), None if absent."""
    for index, word in enumerate(words[:-1]):
        if word.rsplit("/", 1)[-1] == "vllm" and words[index + 1] == "serve":
            return index
    return None
