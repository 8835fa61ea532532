"""Request parsers (upstream's `requestHandler.parsers`, llm-d router v0.10): which requests the picker reads as
OpenAI bodies, and which it forwards unread.

Each parser claims request path suffixes. For a request, the picker takes the first parser of the list that claims
its path (`:path` without the query; `x-original-path`, then `x-forwarded-path` when there is none); a parser that
claims no path is the fallback for every path no earlier parser claims, and parsers listed after it are never
reached. With no parser for the path the request is refused (400), as upstream refuses it.

- `openai-parser` claims the OpenAI API paths (`OPENAI_PATH_SUFFIXES`: `.../chat/completions`, `.../completions`,
  `.../embeddings`, `.../responses`, ...): the body must be a JSON object naming a `model` (else 400); the prompt
  feeds the prefix-aware plugins, the model drives rewrites, LoRA affinity and the metrics' labels;
- `passthrough-parser` claims nothing, so it is the fallback: the body is forwarded as it came, whatever it holds
  (another API's JSON, not JSON at all), and the request is scheduled without model or prompt: load- and
  metrics-based scorers rank the endpoints, prefix-aware ones score every endpoint alike.

A config with neither `requestHandler.parsers` nor the deprecated top-level `parser` gets `openai-parser` then
`passthrough-parser`, so a request on a path the OpenAI parser does not claim (vLLM's `/tokenize`,
`/inference/v1/generate`, ...) is routed by load rather than refused; this is upstream's default list since it added
the passthrough parser to it, without the `anthropic-parser` and `vllmhttp-parser` poolgate does not implement.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from picker.scheduling.framework import Plugin
from picker.scheduling.registry import plugin
from poolgate.api.contract import OPENAI_PATH_SUFFIXES, PATH_HEADERS

log = logging.getLogger("poolgate.picker")

DEFAULT_REQUEST_PATH = "/v1/completions"  # the path of a request that names none (as upstream assumes)


class ParserPlugin(Plugin):
    """A request parser (`requestHandler.parsers[].pluginRef`, or the deprecated `parser.pluginRef`)."""

    claimed_paths: ClassVar[tuple[str, ...]] = ()  # path suffixes it parses; none: the fallback for every other path
    reads_body: ClassVar[bool] = True  # whether the picker parses the body of a request this parser takes


@plugin("openai-parser")
class OpenAiParser(ParserPlugin):
    """Parses OpenAI request bodies on the OpenAI API paths."""

    claimed_paths = OPENAI_PATH_SUFFIXES


@plugin("passthrough-parser")
class PassthroughParser(ParserPlugin):
    """The fallback: forwards a request on any path unread, to be scheduled by load."""

    reads_body = False


def request_path(headers: Mapping[str, str]) -> str:
    """The request's path without its query, from the first of `PATH_HEADERS` present (`DEFAULT_REQUEST_PATH` when
    none is)."""
    for name in PATH_HEADERS:
        path = headers.get(name)
        if path:
            return path.partition("?")[0]
    return DEFAULT_REQUEST_PATH


@dataclass(frozen=True, slots=True)
class RequestParsers:
    """The parsers of a config, in the order they are tried (see the module docstring)."""

    claims: tuple[tuple[str, ParserPlugin], ...] = ()  # (path suffix without slashes, parser), first match wins
    fallback: ParserPlugin | None = None  # takes every path no claim matches

    @classmethod
    def chain(cls, parsers: Sequence[ParserPlugin]) -> RequestParsers:
        """The parsers in list order; a second parser of a type already listed, and every parser after the first
        fallback, are left out with a warning (as upstream does)."""
        claims: list[tuple[str, ParserPlugin]] = []
        seen: set[str] = set()
        for index, parser in enumerate(parsers):
            if parser.type_name in seen:
                log.warning(
                    "request parser left out: a parser of its type is listed earlier",
                    extra={"parser": parser.name, "type": parser.type_name},
                )
                continue
            seen.add(parser.type_name)
            if not parser.claimed_paths:
                for skipped in parsers[index + 1 :]:
                    log.warning(
                        "request parser left out: it is listed after the fallback parser",
                        extra={"parser": skipped.name, "fallback": parser.name},
                    )
                return cls(tuple(claims), parser)
            claims.extend((suffix.strip().strip("/"), parser) for suffix in parser.claimed_paths)
        return cls(tuple(claims))

    def resolve(self, path: str) -> ParserPlugin | None:
        """The parser of a request path (as `request_path` gives it): the first whose suffix ends the path, else the
        fallback; None when no parser takes it."""
        path = path.strip().rstrip("/")
        for suffix, parser in self.claims:
            if path.endswith(suffix):
                return parser
        return self.fallback


def default_parsers() -> RequestParsers:
    """The parsers of a config that lists none: `openai-parser`, then `passthrough-parser` as the fallback."""
    return RequestParsers.chain([OpenAiParser(), PassthroughParser()])
