"""Tokenizing requests as the engine does, so that their block keys meet the keys built from its KV events.

`LocalTokenizer` loads a model directory (or ConfigMap mount) holding `tokenizer.json` and, for chat requests, the
chat template (`chat_template.jinja`, or `chat_template` in `tokenizer_config.json`), and does what vLLM's OpenAI
server does: a completion's `prompt` is encoded with the tokenizer's special tokens added; a chat request's messages
are rendered with the template (`add_generation_prompt`, the template's `bos_token`/`eos_token`, `tools`), then
encoded without adding special tokens (the template writes them). Templates run in Jinja's immutable sandbox with
`trim_blocks` and `lstrip_blocks`, as Hugging Face renders them.

`EngineTokenizer` asks the engine's own `/tokenize` endpoint instead (a network round trip per request: the fallback
when no tokenizer files are mounted).

Both return None for a request they cannot tokenize (no prompt, an unrenderable template, an engine error, an engine
that failed within the last `ENGINE_RETRY_SECONDS`), and the caller then scores with the approximate index.
Both keep the token IDs of recent prompts in a `TokenCache` (keyed by a 128-bit hash of the rendered text, or of the
request sent to the engine; at most `cache_tokens` token IDs in all, 4 bytes each), so a retried or repeated prompt
is not encoded again, and a prompt tokenized ahead of its scheduling cycle (`TokenizeQueue`, off the event loop) is
found there by the cycle.

`TokenizeQueue` runs such blocking work (for bodies of at least `OFF_LOOP_MIN_BYTES`) on worker threads (socket I/O and the `tokenizers` library's `encode_batch`
release the GIL; its `encode` does not)
with a bounded number of jobs queued or running: a caller waits for a slot rather than growing the queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import jinja2
import orjson
import xxhash
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

ENGINE_RETRY_SECONDS = 5.0
NICE_STEP = 5  # how much lower the tokenizing threads' CPU priority is than the event loop's
OFF_LOOP_MIN_BYTES = 4096  # smaller request bodies are tokenized in their cycle (~1 ms), not queued behind big ones


class RequestTokenizer(Protocol):
    """Turns an OpenAI request body into the prompt token IDs the engine will see; request bodies of at least
    `off_loop_min_bytes` are worth tokenizing on a worker thread (0: all of them, e.g. a network call)."""

    off_loop_min_bytes: int

    def tokenize(self, body: Mapping[str, Any]) -> Sequence[int] | None: ...


def _special_token(config: Mapping[str, Any], name: str) -> str:
    value = config.get(name)
    if isinstance(value, dict):  # the older AddedToken form
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


class TokenCache:
    """The token IDs of recent prompts by a 128-bit key, holding at most `max_tokens` token IDs (least recent out);
    safe to share between the event loop and `TokenizeQueue`'s threads."""

    def __init__(self, max_tokens: int) -> None:
        self._entries: OrderedDict[bytes, array[int]] = OrderedDict()  # key -> token IDs, most recent last
        self._max_tokens = max_tokens
        self._held = 0  # token IDs held
        self._lock = threading.Lock()

    @staticmethod
    def key(data: bytes, variant: int = 0) -> bytes:
        """The cache key of a prompt's bytes (`variant` separates encodings of the same bytes)."""
        return xxhash.xxh128_digest(data, seed=variant)

    def get(self, key: bytes) -> array[int] | None:
        """The cached token IDs under `key` (now the most recent), or None."""
        with self._lock:
            tokens = self._entries.get(key)
            if tokens is not None:
                self._entries.move_to_end(key)
            return tokens

    def put(self, key: bytes, tokens: Sequence[int]) -> array[int]:
        """Keep `tokens` under `key` (unless larger than the whole cache); returns them as an array."""
        stored = array("I", tokens)
        with self._lock:
            if len(stored) <= self._max_tokens and key not in self._entries:
                self._entries[key] = stored
                self._held += len(stored)
                while self._held > self._max_tokens:
                    self._held -= len(self._entries.popitem(last=False)[1])
        return stored


class LocalTokenizer:
    """The engine's tokenizer and chat template, loaded from a model directory (see the module docstring)."""

    off_loop_min_bytes = OFF_LOOP_MIN_BYTES

    def __init__(self, directory: str | Path, cache_tokens: int = 2_000_000) -> None:
        root = Path(directory)
        tokenizer_file = root / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {root} (set the token producer's tokenizer path)")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        config_file = root / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        template_file = root / "chat_template.jinja"
        template = template_file.read_text() if template_file.is_file() else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        self.bos_token = _special_token(config, "bos_token")
        self.eos_token = _special_token(config, "eos_token")
        self.template = self._compile(template) if isinstance(template, str) else None
        self.cache = TokenCache(cache_tokens)

    @staticmethod
    def _compile(source: str) -> jinja2.Template:
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        environment.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        return environment.from_string(source)

    def render_chat(self, body: Mapping[str, Any]) -> str | None:
        """The text the chat template makes of a chat request (None without a template or on a template error)."""
        if self.template is None:
            return None
        try:
            return self.template.render(
                messages=body.get("messages"),
                tools=body.get("tools"),
                add_generation_prompt=body.get("add_generation_prompt", True),
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **(body.get("chat_template_kwargs") or {}),
            )
        except (jinja2.TemplateError, TypeError, ValueError) as error:
            log.debug("chat template failed: %s", error)
            return None

    def tokenize(self, body: Mapping[str, Any]) -> Sequence[int] | None:
        """The prompt token IDs of a completion or chat request, or None if this tokenizer cannot tell."""
        if isinstance(body.get("messages"), list):
            text = self.render_chat(body)
            special = False
        elif isinstance(body.get("prompt"), str):
            text, special = body["prompt"], True
        else:
            return None
        if text is None:
            return None
        key = self.cache.key(text.encode("utf-8", "surrogatepass"), int(special))
        tokens = self.cache.get(key)
        if tokens is None:
            # encode_batch releases the GIL while it works (encode holds it: 0.5 s for 100 KB with the tiny model's
            # 1k-vocabulary BPE), so the event loop runs on while a worker thread tokenizes
            encoding = self.tokenizer.encode_batch([text], add_special_tokens=special)[0]
            tokens = self.cache.put(key, encoding.ids)
        return tokens


class EngineTokenizer:
    """Tokenizes through an engine's `/tokenize` endpoint (vLLM's OpenAI server)."""

    off_loop_min_bytes = 0  # a blocking network call: never on the event loop

    def __init__(self, url: str, model: str = "", timeout: float = 0.25, cache_tokens: int = 2_000_000) -> None:
        self.url = url.rstrip("/") + "/tokenize"
        self.model = model
        self.client = httpx.Client(timeout=timeout)
        self.cache = TokenCache(cache_tokens)
        self._retry_at = 0.0  # after a failure, the engine is not asked again before this time (monotonic)

    def tokenize(self, body: Mapping[str, Any]) -> Sequence[int] | None:
        """The engine's token IDs for the request's prompt or messages, or None if it could not answer (or failed
        less than ENGINE_RETRY_SECONDS ago and the prompt is not in the cache)."""
        request: dict[str, Any] = {"model": self.model or body.get("model", "")}
        if isinstance(body.get("messages"), list):
            request["messages"] = body["messages"]
            request["add_generation_prompt"] = body.get("add_generation_prompt", True)
        elif isinstance(body.get("prompt"), str):
            request["prompt"] = body["prompt"]
        else:
            return None
        content = orjson.dumps(request)
        key = self.cache.key(content)
        cached = self.cache.get(key)
        if cached is not None or time.monotonic() < self._retry_at:
            return cached
        try:
            response = self.client.post(self.url, content=content, headers={"content-type": "application/json"})
            response.raise_for_status()
            tokens = response.json().get("tokens")
        except (httpx.HTTPError, ValueError) as error:
            log.debug("engine tokenize failed: %s", error)
            tokens = None
        if not isinstance(tokens, list):
            self._retry_at = time.monotonic() + ENGINE_RETRY_SECONDS
            return None
        return self.cache.put(key, tokens)


def _lower_thread_priority() -> None:
    """Run the calling thread NICE_STEP nice levels below the process (Linux threads have their own nice value),
    so that the event loop thread gets the CPU first when the cores are busy."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + NICE_STEP))
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority
        pass


class TokenizeQueue:
    """Runs blocking work (tokenizing) on `workers` threads at a lower CPU priority than the event loop (default:
    one core fewer than the machine has, at least 1, at most 4), at most `depth` jobs queued or running at once."""

    def __init__(self, workers: int | None = None, depth: int = 64) -> None:
        workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self._executor = ThreadPoolExecutor(workers, "tokenize", initializer=_lower_thread_priority)
        self._slots = asyncio.Semaphore(depth)

    @property
    def full(self) -> bool:
        """Whether every slot is taken (a new job waits for one)."""
        return self._slots.locked()

    async def run(self, work: Callable[[], object]) -> None:
        """Run `work` on a worker thread and wait for it (after waiting for a free slot); its errors are logged,
        not raised: the work only prepares what the caller would otherwise compute itself."""
        async with self._slots:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, work)
            except Exception:
                log.exception("tokenizing ahead of scheduling failed")
