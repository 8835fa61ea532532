"""Polls each endpoint's OpenAI model list (`GET /v1/models`) and records which models it serves.

A model server answers 404 for a model it does not serve, and for a LoRA adapter only the servers that loaded it
list it (vLLM: `--lora-modules`, or `/v1/load_lora_adapter` at run time). The scheduler's served-model filter reads
these lists so that a request for an adapter never goes to a server without it, whatever its load.

Each endpoint is asked once when it joins, then once per interval, the asks spread evenly over the interval, with
at most one in flight per endpoint. An answer that is not a 200 with an OpenAI model list (a server without the
endpoint, a timeout, a refused connection) leaves the endpoint's last list as it was: a dead pod is the metrics
scraper's business, and a list that cannot be read is never guessed. Failures are logged once per transition. The
interval is uvicorn's keep-alive timeout (5 s), so an ask often crosses the server's close of its idle connection;
aiohttp sends such a GET once more on a new connection (it retries an idempotent request once after a disconnect),
so that race is no failure.

Usage, inside a running event loop:

    poller = ServedModelsPoller(pool)       # defaults: every 5 s, 2 s timeout, path /v1/models
    await poller.start()
    ...
    await poller.stop()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson

from picker.pool.state import Endpoint, PoolState
from poolgate.api.contract import MODELS_PATH

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0


def read_model_list(body: bytes) -> tuple[list[str], list[str]]:
    """The model ids of an OpenAI model list and those of them that are LoRA adapters (an entry whose `parent` names
    another model); ValueError if the body is not such a list."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise ValueError("no `data` list of models")
    entries = [entry for entry in data if isinstance(entry, dict) and isinstance(entry.get("id"), str)]
    models = [entry["id"] for entry in entries]
    adapters = [e["id"] for e in entries if isinstance(e.get("parent"), str) and e["parent"] not in ("", e["id"])]
    return models, adapters


class ServedModelsPoller:
    """Keeps every pool endpoint's served-model list current; see the module docstring."""

    def __init__(
        self,
        pool: PoolState,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        timeout: float = 2.0,
        path: str = MODELS_PATH,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("model-list poll interval and timeout must be positive")
        self.pool = pool
        self.interval = interval
        self.timeout = timeout
        self.path = path
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()
        pool.subscribe(added=self._endpoint_added, removed=self._endpoint_removed)

    async def start(self) -> None:
        """Start polling every endpoint of the pool (and those that join later)."""
        if self._ticker is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=1, keepalive_timeout=2 * self.interval),
        )
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="model-list poller")
        for endpoint in self.pool.endpoints():
            self._begin(endpoint.key)

    async def stop(self) -> None:
        """Stop polling and close the connections."""
        ticker, self._ticker = self._ticker, None
        if ticker is None:
            return
        ticker.cancel()
        polls = list(self._in_flight.values())
        for poll in polls:
            poll.cancel()
        await asyncio.gather(ticker, *polls, return_exceptions=True)
        self._in_flight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def poll(self, key: str) -> None:
        """Ask one endpoint for its model list now (or wait for the ask in flight) and record the answer."""
        if self._ticker is None:
            return
        task = self._begin(key)
        if task is not None:
            await asyncio.shield(task)

    def _endpoint_added(self, endpoint: Endpoint) -> None:
        if self._ticker is not None:
            self._begin(endpoint.key)

    def _endpoint_removed(self, key: str) -> None:
        task = self._in_flight.pop(key, None)
        if task is not None:
            task.cancel()
        self._failing.discard(key)

    async def _tick(self) -> None:
        """Ask every endpoint once per interval, the asks spread evenly over it."""
        while True:
            endpoints = self.pool.endpoints()
            if not endpoints:
                await asyncio.sleep(self.interval)
                continue
            gap = self.interval / len(endpoints)
            for endpoint in endpoints:
                await asyncio.sleep(gap)
                if self.pool.get(endpoint.key) is endpoint:
                    self._begin(endpoint.key)

    def _begin(self, key: str) -> asyncio.Task[None] | None:
        """Start an ask of the endpoint unless one is in flight; returns the ask in flight."""
        task = self._in_flight.get(key)
        if task is None and self._session is not None:
            task = self._in_flight[key] = asyncio.get_running_loop().create_task(self._ask(key))
        return task

    async def _ask(self, key: str) -> None:
        try:
            endpoint, session = self.pool.get(key), self._session
            if endpoint is None or session is None:
                return
            try:
                async with session.get(f"http://{key}{self.path}") as response:
                    body = await response.read()
                    if response.status != 200:
                        raise ValueError(f"HTTP {response.status}")
                models, adapters = read_model_list(body)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                if key not in self._failing:
                    self._failing.add(key)
                    log.info("model list unreadable", extra={"endpoint": key, "error": str(error) or repr(error)})
                return
            if key in self._failing:
                self._failing.discard(key)
                log.info("model list readable again", extra={"endpoint": key})
            self.pool.apply_served_models(key, models, adapters)
        finally:
            if self._in_flight.get(key) is asyncio.current_task():
                del self._in_flight[key]
