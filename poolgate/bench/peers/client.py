"""The peers benchmark's client: a workload's requests sent open-loop at their arrival times, as streaming chat
requests, on one asyncio loop (aiohttp).

Each request becomes a `poolgate.bench.routing.fleet.RequestRecord` on the wall clock (seconds since the load
started): arrival = when it was due, first token = when the first server-sent event carrying content arrived,
inter-token gaps = the time between successive content events. The routing benchmark's `summarize` turns these
records into the same row fields as its virtual-clock runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson

from poolgate.api.contract import SERVED_BY_HEADER
from poolgate.bench.routing.fleet import RequestRecord
from poolgate.bench.routing.workloads import CHAT_PATH, Workload


def content_event(line: bytes) -> bool | None:
    """For one line of an SSE stream: True for an event that carries generated text, False for another event,
    None for the end of the stream (`data: [DONE]`)."""
    if not line.startswith(b"data:"):
        return False
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return None
    try:
        choices = orjson.loads(payload).get("choices") or []
    except orjson.JSONDecodeError:
        return False
    return any((choice.get("delta") or {}).get("content") for choice in choices)


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, record: RequestRecord, t0: float) -> None:
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
            record.endpoint = response.headers.get(SERVED_BY_HEADER)
            if response.status != 200:
                record.outcome = "error"
                await response.read()
                return
            last = None
            done = False
            async for line in response.content:
                kind = content_event(line)
                if kind is None:
                    done = True
                    break
                if not kind:
                    continue
                now = time.monotonic() - t0
                if last is None:
                    record.first_token_at = now
                else:
                    record.itl_runs.append([now - last, 1])
                last = now
                record.output_tokens += 1
            record.finished_at = time.monotonic() - t0
            if not done or record.first_token_at is None:
                record.outcome = "error"  # the stream broke off
    except (TimeoutError, aiohttp.ClientError):
        record.outcome = "error"


async def run_load(
    url: str,
    workload: Workload,
    drain: float,
    at: dict[float, Callable[[], Awaitable[None]]] | None = None,
) -> list[RequestRecord]:
    """Send every request of a single-turn workload to `url` at its arrival time; wait at most `drain` seconds after
    the last arrival for the answers (requests still open then are cancelled: outcome "unfinished"). `at` maps
    seconds since the start to coroutines to run then (e.g. reading counters at the end of the warm-up)."""
    target = url + CHAT_PATH
    records: list[RequestRecord] = []
    tasks: list[asyncio.Task] = []
    side: list[asyncio.Task] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.monotonic()
        for when, action in sorted((at or {}).items()):

            async def later(when: float = when, action: Callable[[], Awaitable[None]] = action) -> None:
                await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))
                await action()

            side.append(asyncio.create_task(later()))
        for index, session_turns in enumerate(workload.sessions):
            delay = t0 + session_turns.start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            record = RequestRecord(index, 0, session_turns.start)
            records.append(record)
            body = orjson.dumps(session_turns.turns[0].body)
            tasks.append(asyncio.create_task(_one(session, target, body, record, t0)))
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for record, task in zip(records, tasks, strict=True):
            if task.cancelled():
                record.outcome = "unfinished"
        await asyncio.gather(*side)
    return records
