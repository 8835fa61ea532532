"""Polls each endpoint's Prometheus `/metrics` over HTTP and feeds the pool state.

One polling task per endpoint, started and stopped as endpoints join and leave the pool, so a slow pod never has
more than one scrape in flight. A scrape that fails (timeout, connection error, non-200 answer, unparsable text,
missing core metric) keeps the last good values: the pool counts the consecutive failures and the endpoint's
metrics age grows, which scheduling reads as staleness. A scrape that cannot connect at all (refused: nothing listens,
the pod's server died) also marks the endpoint unreachable until its next good scrape, which scheduling reads at
once: a dead pod stops being picked one scrape interval after its death, not when its metrics are too old. Failures are counted in the Prometheus counter
`inference_extension_metrics_scrape_errors_total{reason}` and logged once per transition (healthy -> failing and
back), not once per failure.

Usage, inside a running event loop:

    scraper = MetricsScraper(pool)          # defaults: every 50 ms, 1 s timeout
    await scraper.start()
    ...
    await scraper.stop()
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from picker.pool.metrics import MetricsError, parse_metrics_text
from picker.pool.state import Endpoint, PoolState

log = logging.getLogger(__name__)

_COUNTERS: dict[int, Counter] = {}


def scrape_error_counter(registry: CollectorRegistry = REGISTRY) -> Counter:
    """Return the scrape-error counter registered in `registry` (created once per registry)."""
    counter = _COUNTERS.get(id(registry))
    if counter is None:
        counter = Counter(
            "inference_extension_metrics_scrape_errors",
            "Failed scrapes of model-server metrics.",
            ["reason"],
            registry=registry,
        )
        _COUNTERS[id(registry)] = counter
    return counter


class ScrapeFailure(Exception):
    """A failed scrape, with the reason label it is counted under."""

    def __init__(self, reason: str, detail: str, unreachable: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.unreachable = unreachable


class MetricsScraper:
    """Keeps one polling task per pool endpoint; see the module docstring."""

    def __init__(
        self,
        pool: PoolState,
        *,
        interval: float = 0.05,
        timeout: float = 1.0,
        path: str = "/metrics",
        scheme: str = "http",
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("scrape interval and timeout must be positive")
        self.pool = pool
        self.interval = interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.path = path
        self.scheme = scheme
        self.errors = scrape_error_counter(registry)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        pool.subscribe(added=self._endpoint_added, removed=self._endpoint_removed)

    @property
    def running(self) -> bool:
        """Whether the scraper has been started and not stopped."""
        return self._session is not None

    def polled_endpoints(self) -> set[str]:
        """The keys of the endpoints that currently have a polling task."""
        return set(self._tasks)

    async def start(self) -> None:
        """Open the HTTP session and start polling every endpoint of the pool."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for endpoint in self.pool.endpoints():
            self._endpoint_added(endpoint)

    async def stop(self) -> None:
        """Stop every polling task and close the HTTP session."""
        session, self._session = self._session, None
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if session is not None:
            await session.close()

    async def __aenter__(self) -> MetricsScraper:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _endpoint_added(self, endpoint: Endpoint) -> None:
        if self._session is not None and endpoint.key not in self._tasks:
            self._tasks[endpoint.key] = asyncio.get_running_loop().create_task(
                self._poll(endpoint.key), name=f"scrape {endpoint.key}"
            )

    def _endpoint_removed(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        self._failing.discard(key)

    async def _poll(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        while self.pool.get(key) is not None:
            started = loop.time()
            try:
                await self.scrape_once(key)
            except ScrapeFailure as failure:
                self._failed(key, failure)
            except Exception as error:  # a bug must not end the polling of this endpoint
                log.exception("metrics scrape crashed", extra={"endpoint": key})
                self._failed(key, ScrapeFailure("internal", repr(error)))
            else:
                self._succeeded(key)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    async def scrape_once(self, key: str) -> None:
        """Scrape one endpoint now and apply the result; raises ScrapeFailure when the scrape fails."""
        endpoint = self.pool.get(key)
        if endpoint is None or self._session is None:
            return
        mark = self.pool.scrape_mark()
        url = f"{self.scheme}://{key}{self.path}"
        try:
            async with self._session.get(url, timeout=self.timeout) as response:
                body = await response.read()
                if response.status != 200:
                    raise ScrapeFailure("http_status", f"{url} answered HTTP {response.status}")
        except TimeoutError as error:
            raise ScrapeFailure("timeout", f"{url} did not answer within {self.timeout.total} s") from error
        except aiohttp.ClientSSLError as error:  # a server answered, with a TLS problem: not a dead pod
            raise ScrapeFailure("connection", f"{url}: {error}") from error
        except aiohttp.ClientConnectorError as error:  # refused, no route: nothing listens there
            raise ScrapeFailure("connection", f"{url}: {error}", unreachable=True) from error
        except aiohttp.ClientError as error:
            raise ScrapeFailure("connection", f"{url}: {error}") from error
        try:
            samples = parse_metrics_text(endpoint.engine, body.decode("utf-8", errors="replace"))
            self.pool.apply_samples(key, samples, self.pool.clock(), mark)
        except MetricsError as error:
            raise ScrapeFailure("invalid_metrics", f"{url}: {error}") from error

    def _failed(self, key: str, failure: ScrapeFailure) -> None:
        self.errors.labels(reason=failure.reason).inc()
        self.pool.record_scrape_error(key, str(failure), failure.unreachable)
        if key not in self._failing:
            self._failing.add(key)
            log.warning(
                "metrics scrape failing; keeping last good values",
                extra={"endpoint": key, "reason": failure.reason, "error": str(failure)},
            )

    def _succeeded(self, key: str) -> None:
        if key in self._failing:
            self._failing.discard(key)
            log.info("metrics scrape recovered", extra={"endpoint": key})
