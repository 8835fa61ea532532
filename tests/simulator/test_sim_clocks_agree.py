"""The same scenario on the wall clock (asyncio) and on the virtual clock gives the same latencies."""

from __future__ import annotations

import asyncio

import pytest

from simulator import Prompt, ServerConfig, ServerModel, VirtualClock, WallClock

CONFIG = ServerConfig(
    max_num_seqs=2, prefill_overhead=0.02, prefill_per_token=0.0001, decode_step=0.01, full_batch_slowdown=1.5
)
# (arrival seconds, prompt tokens, max_tokens); two share a prompt prefix; the third queues for a slot.
SCENARIO = [(0.0, 300, 10, "a"), (0.0, 200, 15, "b"), (0.03, 400, 8, "c"), (0.12, 300, 12, "a")]


def submit_all(server: ServerModel, call_at, records: list) -> None:
    for arrival, tokens, max_tokens, fill in SCENARIO:
        prompt = Prompt.from_text(fill * 4 * tokens)
        call_at(arrival, lambda p=prompt, m=max_tokens: records.append(server.submit(p, m)))


def latencies(records: list) -> list[tuple[float, float]]:
    return [(r.ttft, r.e2e) for r in sorted(records, key=lambda r: r.id)]


async def test_wall_and_virtual_clock_agree():
    clock = VirtualClock()
    virtual_server, virtual_records = ServerModel(clock, CONFIG), []
    submit_all(virtual_server, clock.call_at, virtual_records)
    clock.run_until_idle()

    loop = asyncio.get_running_loop()
    wall_server, wall_records = ServerModel(WallClock(), CONFIG), []
    start = loop.time() + 0.01
    submit_all(wall_server, lambda t, fn: loop.call_at(start + t, fn), wall_records)
    async with asyncio.timeout(10):
        while len(wall_records) < len(SCENARIO) or not wall_server.idle:
            await asyncio.sleep(0.01)

    assert [r.cached_tokens for r in wall_records] == [r.cached_tokens for r in virtual_records]
    assert virtual_records[3].cached_tokens > 0 and virtual_records[2].queue_time > 0
    for (wall_ttft, wall_e2e), (ttft, e2e) in zip(latencies(wall_records), latencies(virtual_records)):
        assert wall_ttft == pytest.approx(ttft, abs=0.03, rel=0.1)
        assert wall_e2e == pytest.approx(e2e, abs=0.03, rel=0.1)
