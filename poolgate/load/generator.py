"""An open-loop HTTP load generator for benchmarks and fault tests against a running gateway.

Requests start at a fixed rate whatever the answers do (a slow or failing gateway does not slow the load down), each
with a deadline, so a request that hangs is recorded as one. It runs on its own thread and event loop (aiohttp), so
the caller can inject faults while it runs:

    with Load(url + "/v1/chat/completions", rate=50, body=lambda i: chat_body()) as load:
        time.sleep(2); kill_something(); time.sleep(2)
    summary = load.summary()          # requests, ok, failed, p99_ms ...
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

from poolgate.api.contract import PICKED_ECHO_HEADER, SERVED_BY_HEADER


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (seconds since the load started), how long it took, and how it ended."""

    started: float
    elapsed: float
    status: int  # HTTP status; 0 when no complete response arrived
    error: str = ""  # "" for a complete response, else what went wrong (a timeout is "timeout")
    served_by: str = ""  # the model server that answered (x-poolgate-served-by)
    picked: str = ""  # the endpoint the picker chose, as the simulated server that answered saw it
    headers: Mapping[str, str] = field(default_factory=dict)  # response headers asked for by `keep_headers`

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of the values by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summarize(outcomes: list[Outcome]) -> dict:
    """requests, ok, failed and the latency percentiles (ms) of a list of outcomes."""
    elapsed = [o.elapsed * 1000 for o in outcomes]
    p50, p99 = percentile(elapsed, 0.5), percentile(elapsed, 0.99)
    ok = sum(o.ok for o in outcomes)
    return {
        "requests": len(outcomes),
        "ok": ok,
        "failed": len(outcomes) - ok,
        "p50_ms": None if p50 is None else round(p50, 1),
        "p99_ms": None if p99 is None else round(p99, 1),
        "max_ms": round(max(elapsed), 1) if elapsed else None,
    }


class Load:
    """Requests to `url` at `rate` per second until stopped (or `limit` requests); see the module docstring.

    `body(i)` gives the i-th request's JSON body (a dict, or bytes sent as they are); `headers(i)` its extra
    headers. Responses are read to the end (a streamed response that breaks off counts as failed). `timeout` is
    each request's deadline in seconds."""

    def __init__(
        self,
        url: str | Callable[[int], str],
        rate: float,
        body: Callable[[int], dict | bytes],
        headers: Callable[[int], dict[str, str]] | None = None,
        timeout: float = 10.0,
        keep_headers: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.url = url if callable(url) else (lambda i, u=url: u)
        self.rate = rate
        self.body = body
        self.headers = headers or (lambda i: {})
        self.timeout = timeout
        self.keep_headers = tuple(h.lower() for h in keep_headers)
        self.limit = limit
        self.outcomes: list[Outcome] = []
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- control -------------------------------------------------------------------------------------------------

    def start(self) -> Load:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """Stop starting requests, wait for those in flight (at most their deadline) and return every outcome."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 10)
            self._thread = None
        if self._error is not None:
            raise self._error
        return self.outcomes

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the load started (the clock of `Outcome.started`)."""
        return time.monotonic() - self.t0

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Block until at least `count` requests have finished."""
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} requests not finished after {timeout} s ({len(self.outcomes)} were)")
            time.sleep(0.02)

    def summary(self) -> dict:
        return summarize(self.outcomes)

    # -- the loop ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # surfaced by stop()
            self._error = error

    async def _main(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks: set[asyncio.Task] = set()
            i = 0
            while not self._stop.is_set() and (self.limit is None or i < self.limit):
                due = self.t0 + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(min(delay, 0.05))
                    continue
                task = asyncio.create_task(self._one(session, i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks)

    async def _one(self, session: aiohttp.ClientSession, i: int) -> None:
        started = time.monotonic()
        status, error = 0, ""
        headers: Mapping[str, str] = {}
        body = self.body(i)
        try:
            async with session.post(
                self.url(i),
                data=body if isinstance(body, bytes) else orjson.dumps(body),
                headers={"content-type": "application/json", **self.headers(i)},
            ) as response:
                status = response.status
                headers = response.headers
                await response.read()
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        kept = {h: headers[h] for h in self.keep_headers if h in headers}
        self.outcomes.append(
            Outcome(
                started - self.t0,
                time.monotonic() - started,
                status,
                error,
                headers.get(SERVED_BY_HEADER, ""),
                headers.get(PICKED_ECHO_HEADER, ""),
                kept,
            )
        )
