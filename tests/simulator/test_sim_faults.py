"""Fault injection on a simulated server's /metrics (`poolgate sim --metrics-fault`), for testing scrapers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from picker.pool.metrics import ENGINES, MetricsError, parse_metrics_text, read_samples
from simulator.config import METRICS_FAULT_PATH
from simulator.server import GARBAGE_METRICS, SimulatedServer


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_fault_endpoint_exists_only_when_fault_injection_is_on(http):
    async with SimulatedServer("127.0.0.12:0") as plain:
        async with http.get(f"http://{plain.address}{METRICS_FAULT_PATH}") as response:
            assert response.status == 404
    async with SimulatedServer("127.0.0.12:0", metrics_fault="none") as server:
        url = f"http://{server.address}{METRICS_FAULT_PATH}"
        async with http.get(url) as response:
            assert await response.json() == {"mode": "none", "scrapes": 0, "in_flight": 0, "max_in_flight": 0}
        async with http.put(url, json={"mode": "sideways"}) as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "mode"
        async with http.get(f"http://{server.address}/metrics") as response:
            assert response.status == 200 and "vllm:num_requests_waiting" in await response.text()


async def test_garbage_mode_answers_every_kind_of_garbage_and_no_reading_survives_it(http):
    async with SimulatedServer("127.0.0.12:0", metrics_fault="garbage") as server:
        bodies = set()
        for _ in range(len(GARBAGE_METRICS)):
            async with http.get(f"http://{server.address}/metrics") as response:
                assert response.status == 200
                bodies.add(await response.read())
        assert bodies == set(GARBAGE_METRICS)
    for body in GARBAGE_METRICS:  # the picker's reader refuses each one (no crash, no reading)
        with pytest.raises(MetricsError):
            read_samples(ENGINES["vllm"], parse_metrics_text(ENGINES["vllm"], body.decode("utf-8", "replace")))


async def test_hang_mode_never_answers_counts_scrapes_in_flight_and_can_be_healed(http):
    async with SimulatedServer("127.0.0.12:0", metrics_fault="none") as server:
        url = f"http://{server.address}{METRICS_FAULT_PATH}"
        async with http.put(url, json={"mode": "hang"}) as response:
            assert (await response.json())["mode"] == "hang"
        timeout = aiohttp.ClientTimeout(total=0.3)
        scrapes = [http.get(f"http://{server.address}/metrics", timeout=timeout) for _ in range(3)]
        results = await asyncio.gather(*scrapes, return_exceptions=True)
        assert all(isinstance(r, asyncio.TimeoutError) for r in results)
        await asyncio.sleep(0.1)  # the server sees the clients hang up
        async with http.get(url) as response:
            assert await response.json() == {"mode": "hang", "scrapes": 3, "in_flight": 0, "max_in_flight": 3}
        async with http.put(url, json={"mode": "none"}):
            pass
        async with http.get(f"http://{server.address}/metrics") as response:
            assert response.status == 200
