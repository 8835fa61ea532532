"""Polls each endpoint's Prometheus `/metrics` over HTTP and feeds the pool state.

Every endpoint is scraped once per interval, at its own phase: the interval is cut into slots (5 ms each, at most 64)
and each endpoint joins the emptiest slot (`ScrapeSlots`), so a pool's scrapes are spread evenly over the interval
instead of fired together. One ticker task wakes at each slot that has endpoints (a slot that was empty when it went
to sleep is served, late, at its next wake) and writes the slot's GETs; each endpoint has one keep-alive connection
(`picker/pool/http.py`) and never more than one scrape in flight, so a slow or hung pod is asked once per timeout and
holds up nobody else. The GET asks for only the metrics the engine's mapping reads (`?name[]=...`, which
prometheus-client servers such as vLLM's honour, sparing them the rendering of every histogram); a server that
answers such a request without a core metric is asked again for its whole page (at most once per 10 s, so a broken
server is not asked twice per interval), and from then on if that reads.
Either way only the lines of the mapped metrics are read (`read_metrics_text`), and only when the answer differs
from the endpoint's previous one: an idle engine's selected series do not change between scrapes, so a byte-identical
answer reuses the previous reading (the endpoint's metrics still count as fresh from this scrape).

A scrape that fails (timeout, connection error, non-200 answer, unparsable text, missing core metric) keeps the last
good values: the pool counts the consecutive failures and the endpoint's metrics age grows, which scheduling reads as
staleness. A scrape that cannot connect at all (refused or no route: nothing listens, the pod's server died) also marks
the endpoint unreachable until its next good scrape, which scheduling reads at once: a dead pod stops being picked one
scrape interval after its death, not when its metrics are too old. Failures are counted in the Prometheus counter
`inference_extension_metrics_scrape_errors_total{reason}` and logged once per transition (healthy -> failing and back),
not once per failure.

A GET on a kept-alive connection that the server closes before any byte of the answer came (a server closes an idle
connection when it likes: uvicorn after 5 s, and its close can cross the GET) is sent once more on a new connection,
within the same timeout, as HTTP clients do; only a failure on that new connection counts.

Usage, inside a running event loop:

    scraper = MetricsScraper(pool)          # defaults: every 50 ms, 1 s timeout
    await scraper.start()
    ...
    await scraper.stop()
"""

from __future__ import annotations

import asyncio
import enum
import logging
from functools import partial

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from picker.pool.http import ScrapeConnection
from picker.pool.metrics import (
    EngineMetricNames,
    EngineReading,
    MetricsError,
    metrics_query,
    read_metrics_text,
)
from picker.pool.state import Endpoint, PoolState

log = logging.getLogger(__name__)

SLOT_SECONDS = 0.005  # the scrapes of one interval are spread over slots this long
MAX_SLOTS = 64
PROBE_BACKOFF = 10.0  # seconds at least between two whole-page probes of an endpoint whose answers by name fail

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


class ScrapeSlots:
    """Which endpoints are scraped in which slot of the interval.

    An endpoint joins the emptiest slot; among equally empty slots, the next in a golden-ratio order (0, 0.62, 0.24,
    0.85, ... of the interval), so that a few endpoints spread over the whole interval rather than its start.
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("a scrape schedule needs at least one slot")
        self.members: list[list[str]] = [[] for _ in range(count)]
        self._slot_of: dict[str, int] = {}
        order = list(dict.fromkeys(int((k * _GOLDEN) % 1.0 * count) for k in range(16 * count)))
        order += [slot for slot in range(count) if slot not in order]
        self._rank = {slot: rank for rank, slot in enumerate(order)}

    def add(self, key: str) -> int:
        """Give an endpoint a slot (its current one if it has one); returns the slot."""
        slot = self._slot_of.get(key)
        if slot is None:
            slot = min(range(len(self.members)), key=lambda index: (len(self.members[index]), self._rank[index]))
            self.members[slot].append(key)
            self._slot_of[key] = slot
        return slot

    def remove(self, key: str) -> None:
        """Free an endpoint's slot."""
        slot = self._slot_of.pop(key, None)
        if slot is not None:
            self.members[slot].remove(key)


_GOLDEN = (5**0.5 - 1) / 2


def slot_count(interval: float) -> int:
    """How many slots an interval is cut into: one per 5 ms, at least 1 and at most 64."""
    return max(1, min(MAX_SLOTS, round(interval / SLOT_SECONDS)))


class _Query(enum.Enum):
    """What an endpoint is asked for: the mapped metrics only, the whole page once to check, or the whole page."""

    FILTERED = "filtered"
    PROBING_FULL = "probing full page"
    FULL = "full page"


class _Target:
    """The scraping state of one endpoint."""

    __slots__ = (
        "body",
        "connecting",
        "connection",
        "key",
        "mark",
        "names",
        "next_probe",
        "query",
        "reading",
        "request",
        "request_for",
        "sent_at",
        "waiters",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.connection: ScrapeConnection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.sent_at: float | None = None  # loop time the scrape in flight began; None when idle
        self.mark = 0  # the pool's dispatch mark when that scrape began
        self.query = _Query.FILTERED
        self.next_probe = 0.0  # loop time before which a bad answer by name is not followed by a whole-page probe
        self.waiters: list[asyncio.Future[None]] = []  # `scrape_once` callers waiting for the scrape in flight
        self.body: bytes | None = None  # the last answer read well, with the engine mapping it was read with
        self.names: EngineMetricNames | None = None
        self.reading: EngineReading | None = None  # ... and what was read from it
        self.request = b""  # the GET for the query and engine mapping in `request_for`
        self.request_for: tuple[_Query, EngineMetricNames] | None = None


class MetricsScraper:
    """Scrapes every pool endpoint once per interval; see the module docstring."""

    def __init__(
        self,
        pool: PoolState,
        *,
        interval: float = 0.05,
        timeout: float = 1.0,
        path: str = "/metrics",
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("scrape interval and timeout must be positive")
        self.pool = pool
        self.interval = interval
        self.timeout = timeout
        self.path = path
        self.errors = scrape_error_counter(registry)
        self.slots = ScrapeSlots(slot_count(interval))
        self._targets: dict[str, _Target] = {}
        self._in_flight: dict[str, _Target] = {}
        self._failing: set[str] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the running loop, from `start` on
        self.good_scrapes = 0  # scrapes read and applied since the scraper was made
        self.unchanged_answers = 0  # good scrapes whose answer was the endpoint's previous one (its reading reused)
        self.resent_scrapes = 0  # GETs sent again on a new connection after a kept-alive one closed under them
        pool.subscribe(added=self._endpoint_added, removed=self._endpoint_removed)

    @property
    def running(self) -> bool:
        """Whether the scraper has been started and not stopped."""
        return self._ticker is not None

    def polled_endpoints(self) -> set[str]:
        """The keys of the endpoints being scraped."""
        return set(self._targets)

    async def start(self) -> None:
        """Start scraping every endpoint of the pool (and those that join later)."""
        if self._ticker is not None:
            return
        self._loop = asyncio.get_running_loop()  # kept: asking for it costs a getpid() system call each time
        self._ticker = self._loop.create_task(self._tick(), name="metrics scraper")
        for endpoint in self.pool.endpoints():
            self._endpoint_added(endpoint)

    async def stop(self) -> None:
        """Stop scraping and close every connection."""
        ticker, self._ticker = self._ticker, None
        if ticker is None:
            return
        ticker.cancel()
        connecting = []
        for key in list(self._targets):
            target = self._drop(key)
            if target.connecting is not None:
                connecting.append(target.connecting)
        await asyncio.gather(ticker, *connecting, return_exceptions=True)

    async def __aenter__(self) -> MetricsScraper:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def scrape_once(self, key: str) -> None:
        """Scrape one endpoint now (or wait for its scrape in flight) and apply the result; raises ScrapeFailure
        when that scrape fails."""
        target = self._targets.get(key)
        if target is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        target.waiters.append(done)
        self._begin(target)
        await done

    # -- membership -----------------------------------------------------------------------------------------------

    def _endpoint_added(self, endpoint: Endpoint) -> None:
        if self._ticker is not None and endpoint.key not in self._targets:
            self._targets[endpoint.key] = _Target(endpoint.key)
            self.slots.add(endpoint.key)

    def _endpoint_removed(self, key: str) -> None:
        if key in self._targets:
            self._drop(key)
        self._failing.discard(key)

    def _drop(self, key: str) -> _Target:
        target = self._targets.pop(key)
        self.slots.remove(key)
        self._in_flight.pop(key, None)
        if target.connection is not None:
            target.connection.close()
        if target.connecting is not None:
            target.connecting.cancel()
        for waiter in target.waiters:
            if not waiter.done():
                waiter.set_result(None)
        return target

    # -- the schedule -----------------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Wake at every slot that has endpoints, begin their scrapes, and time out scrapes in flight too long."""
        loop = asyncio.get_running_loop()
        slots = self.slots.members
        slot_length = self.interval / len(slots)
        start = loop.time()
        fired = -1  # the last slot (counted from start) whose scrapes began
        while True:
            now = loop.time()
            current = int((now - start) / slot_length)
            try:
                for number in range(max(fired + 1, current - len(slots) + 1), current + 1):
                    for key in slots[number % len(slots)]:
                        self._begin(self._targets[key])
                self._expire(now)
            except Exception:  # a bug must not end the scraping of the pool
                log.exception("metrics scraper tick crashed")
            fired = current
            ahead = next((k for k in range(1, len(slots)) if slots[(current + k) % len(slots)]), len(slots))
            next_slot = start + (current + ahead) * slot_length  # empty slots are slept through
            await asyncio.sleep(max(0.0, min(next_slot, now + self.timeout / 4) - loop.time()))

    def _expire(self, now: float) -> None:
        for target in [t for t in self._in_flight.values() if t.sent_at is not None and now - t.sent_at > self.timeout]:
            if target.connection is not None:
                target.connection.close()
                target.connection = None
            if target.connecting is not None:
                target.connecting.cancel()
                target.connecting = None
            self._finish(
                target, ScrapeFailure("timeout", f"{self._url(target)} did not answer within {self.timeout} s")
            )

    # -- one scrape -------------------------------------------------------------------------------------------------

    def _begin(self, target: _Target) -> None:
        """Start a scrape of the endpoint unless one is in flight."""
        loop = self._loop
        if target.sent_at is not None or self._ticker is None or loop is None:
            return
        target.sent_at = loop.time()
        target.mark = self.pool.scrape_mark()
        self._in_flight[target.key] = target
        connection = target.connection
        if connection is not None and connection.idle:
            connection.send(self._request(target))
        else:
            target.connection = None
            target.connecting = loop.create_task(self._connect(target))

    async def _connect(self, target: _Target) -> None:
        endpoint = self.pool.get(target.key)
        if endpoint is None:
            return
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: ScrapeConnection(partial(self._on_response, target), partial(self._on_failure, target)),
                endpoint.address,
                endpoint.port,
            )
        except Exception as error:  # refused, unreachable, or an address the loop cannot use
            target.connecting = None
            # refused or no route (an OSError): nothing listens there, the pod's server died or has not started
            unreachable = isinstance(error, OSError)
            self._finish(target, ScrapeFailure("connection", f"{self._url(target)}: {error!r}", unreachable))
            return
        target.connecting = None
        if self._targets.get(target.key) is not target or target.sent_at is None:
            connection.close()  # the endpoint left, or its scrape timed out, while connecting
            return
        target.connection = connection
        connection.send(self._request(target))

    def _request(self, target: _Target) -> bytes:
        """The GET for the endpoint's query and engine mapping (made once per change of either)."""
        endpoint = self.pool.get(target.key)
        if endpoint is None:
            return self._get(self.path, target.key)
        request_for = (target.query, endpoint.engine)
        if target.request_for != request_for:
            path = f"{self.path}?{metrics_query(endpoint.engine)}" if target.query is _Query.FILTERED else self.path
            target.request, target.request_for = self._get(path, target.key), request_for
        return target.request

    @staticmethod
    def _get(path: str, host: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\n\r\n".encode()

    def _url(self, target: _Target) -> str:
        return f"http://{target.key}{self.path}"

    def _on_failure(self, target: _Target, connection: ScrapeConnection, detail: str, resend: bool) -> None:
        if target.connection is connection and target.sent_at is not None:
            target.connection = None
            if resend and self._loop is not None:  # a kept-alive connection closed as the GET crossed its close
                self.resent_scrapes += 1
                target.connecting = self._loop.create_task(self._connect(target))  # fresh: its failure is one
                return
            self._finish(target, ScrapeFailure("connection", f"{self._url(target)}: {detail}"))

    def _on_response(self, target: _Target, connection: ScrapeConnection, status: int, body: bytes) -> None:
        if target.connection is not connection or target.sent_at is None:
            return
        if connection.closed:
            target.connection = None
        try:
            self._apply(target, status, body)
        except ScrapeFailure as failure:
            now = asyncio.get_running_loop().time()
            if failure.reason == "invalid_metrics" and target.query is _Query.FILTERED and now >= target.next_probe:
                target.query = _Query.PROBING_FULL  # perhaps a server that does not filter well: ask for it all
                target.next_probe = now + max(PROBE_BACKOFF, 100 * self.interval)  # a broken one: not every time
                target.sent_at = None
                self._begin(target)
                return
            if target.query is _Query.PROBING_FULL:
                target.query = _Query.FILTERED
            self._finish(target, failure)
        except Exception as error:  # a bug must not end the scraping of this endpoint
            log.exception("metrics scrape crashed", extra={"endpoint": target.key})
            self._finish(target, ScrapeFailure("internal", repr(error)))
        else:
            if target.query is _Query.PROBING_FULL:
                target.query = _Query.FULL
                log.info(
                    "endpoint does not filter /metrics by name; scraping its whole page", extra={"endpoint": target.key}
                )
            self._finish(target, None)

    def _apply(self, target: _Target, status: int, body: bytes) -> None:
        if status != 200:
            raise ScrapeFailure("http_status", f"{self._url(target)} answered HTTP {status}")
        endpoint = self.pool.get(target.key)
        if endpoint is None:
            return
        names = endpoint.engine
        if body == target.body and names is target.names and target.reading is not None:
            self.unchanged_answers += 1
        else:
            try:
                reading = read_metrics_text(names, body)
            except MetricsError as error:
                raise ScrapeFailure("invalid_metrics", f"{self._url(target)}: {error}") from error
            target.body, target.names, target.reading = body, names, reading
        self.pool.apply_reading(target.key, target.reading, self.pool.clock(), target.mark)

    def _finish(self, target: _Target, failure: ScrapeFailure | None) -> None:
        target.sent_at = None
        self._in_flight.pop(target.key, None)
        if failure is None:
            self.good_scrapes += 1
            self._succeeded(target.key)
        else:
            self._failed(target.key, failure)
        if not target.waiters:
            return
        waiters, target.waiters = target.waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if failure is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(failure)

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
