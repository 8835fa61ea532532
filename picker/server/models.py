"""The model router's answer to `GET /v1/models`: the OpenAI model list of one Gateway.

Envoy's model-router filter of each listener carries, as gRPC metadata, where that listener's pools' model servers
answer `/v1/models` (a few endpoints per pool, or the pool's headless Service on a cluster) and the names the pools'
InferenceModelRewrites accept. The router asks every pool at once, each endpoint in turn until one answers within
`MODEL_LIST_TIMEOUT_S`; a pool none of whose endpoints answers is left out. Entries are de-duplicated by `id`
(the first pool's entry wins; LoRA adapters keep their `parent`); each rewrite name of a pool that answered and
whose servers did not report it is added as a model of its own (`owned_by` "poolgate").
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import orjson

from poolgate.api.contract import MODELS_PATH

log = logging.getLogger("poolgate.picker")

MODEL_LIST_TIMEOUT_S = 2.0  # per endpoint asked


def is_model_list_request(headers: dict[str, str]) -> bool:
    """Whether a request is `GET /v1/models` (query ignored)."""
    return headers.get(":method") == "GET" and headers.get(":path", "").partition("?")[0].rstrip("/") == MODELS_PATH


async def _pool_models(session: aiohttp.ClientSession, pool: str, source: dict[str, Any]) -> list[dict[str, Any]]:
    """The model entries the first answering endpoint of a pool reports, then its rewrite names not among them;
    none when no endpoint answers."""
    for address in source.get("endpoints", []):
        try:
            async with session.get(f"http://{address}{MODELS_PATH}") as response:
                if response.status == 200:
                    data = orjson.loads(await response.read()).get("data")
                    if isinstance(data, list):
                        return _with_aliases(
                            [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)],
                            source.get("aliases", []),
                        )
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError) as error:
            log.info(
                "model list: endpoint did not answer", extra={"pool": pool, "endpoint": address, "error": str(error)}
            )
    log.warning("model list: pool left out, no endpoint answered", extra={"pool": pool})
    return []


def _with_aliases(entries: list[dict[str, Any]], aliases: list[str]) -> list[dict[str, Any]]:
    reported = {entry["id"] for entry in entries}
    created = int(time.time())
    return entries + [
        {"id": alias, "object": "model", "created": created, "owned_by": "poolgate", "root": None, "parent": None}
        for alias in aliases
        if alias not in reported
    ]


async def model_list(sources: str) -> bytes:
    """The OpenAI `/v1/models` body for the model-list metadata `sources` (see the module docstring)."""
    spec = orjson.loads(sources)
    timeout = aiohttp.ClientTimeout(total=MODEL_LIST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        found = await asyncio.gather(*(_pool_models(session, pool, source) for pool, source in spec.items()))
    data: dict[str, dict[str, Any]] = {}
    for entries in found:
        for entry in entries:
            data.setdefault(entry["id"], entry)
    return orjson.dumps({"object": "list", "data": list(data.values())})
