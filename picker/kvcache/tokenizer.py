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
`LocalTokenizer` keeps the token IDs of recent prompts (keyed by a 128-bit hash of the rendered text, at most
`cache_tokens` token IDs in all, 4 bytes each), so a retried or repeated prompt is not encoded again.
"""

from __future__ import annotations

import json
import logging
import time
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import jinja2
import xxhash
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

ENGINE_RETRY_SECONDS = 5.0


class RequestTokenizer(Protocol):
    """Turns an OpenAI request body into the prompt token IDs the engine will see."""

    def tokenize(self, body: Mapping[str, Any]) -> Sequence[int] | None: ...


def _special_token(config: Mapping[str, Any], name: str) -> str:
    value = config.get(name)
    if isinstance(value, dict):  # the older AddedToken form
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


class LocalTokenizer:
    """The engine's tokenizer and chat template, loaded from a model directory (see the module docstring)."""

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
        self._cache: OrderedDict[bytes, array[int]] = OrderedDict()  # hash of the text -> token IDs, recent last
        self._cache_tokens = cache_tokens
        self._cached = 0  # token IDs held by the cache

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
        key = xxhash.xxh128_digest(text.encode("utf-8", "surrogatepass"), seed=int(special))
        tokens = self._cache.get(key)
        if tokens is not None:
            self._cache.move_to_end(key)
            return tokens
        tokens = array("I", self.tokenizer.encode(text, add_special_tokens=special).ids)
        if len(tokens) <= self._cache_tokens:
            self._cache[key] = tokens
            self._cached += len(tokens)
            while self._cached > self._cache_tokens:
                self._cached -= len(self._cache.popitem(last=False)[1])
        return tokens


class EngineTokenizer:
    """Tokenizes through an engine's `/tokenize` endpoint (vLLM's OpenAI server)."""

    def __init__(self, url: str, model: str = "", timeout: float = 0.25) -> None:
        self.url = url.rstrip("/") + "/tokenize"
        self.model = model
        self.client = httpx.Client(timeout=timeout)
        self._retry_at = 0.0  # after a failure, the engine is not asked again before this time (monotonic)

    def tokenize(self, body: Mapping[str, Any]) -> Sequence[int] | None:
        """The engine's token IDs for the request's prompt or messages, or None if it could not answer (or failed
        less than ENGINE_RETRY_SECONDS ago)."""
        if time.monotonic() < self._retry_at:
            return None
        request: dict[str, Any] = {"model": self.model or body.get("model", "")}
        if isinstance(body.get("messages"), list):
            request["messages"] = body["messages"]
            request["add_generation_prompt"] = body.get("add_generation_prompt", True)
        elif isinstance(body.get("prompt"), str):
            request["prompt"] = body["prompt"]
        else:
            return None
        try:
            response = self.client.post(self.url, json=request)
            response.raise_for_status()
            tokens = response.json().get("tokens")
        except (httpx.HTTPError, ValueError) as error:
            log.debug("engine tokenize failed: %s", error)
            tokens = None
        if not isinstance(tokens, list):
            self._retry_at = time.monotonic() + ENGINE_RETRY_SECONDS
            return None
        return tokens
