"""The picker with real pool state: simulated vLLM pods on their own loopback addresses, scraped for real."""

import asyncio

import aiohttp
import pytest

from picker.discovery.view import PickerView
from simulator.config import ServerConfig
from simulator.server import SimulatedServers
from tests.support.extproc import header_values, request_body, request_headers
from tests.support.picker import PickerHarness, pool_view

POOL = "default/pool"
SLOW = ServerConfig(max_num_seqs=1, decode_step=0.05, prefill_overhead=0.0, prefill_per_token=0.0)


async def fill_queue(session: aiohttp.ClientSession, address: str, requests: int) -> list[asyncio.Task]:
    """Send long requests straight to a simulated pod so that its queue grows (cancel the tasks to stop)."""

    async def one():
        async with session.post(
            f"http://{address}/v1/completions",
            json={"model": SLOW.model, "prompt": "keep me busy", "max_tokens": 2000, "stream": True},
        ) as response:
            async for _ in response.content:
                pass

    return [asyncio.create_task(one()) for _ in range(requests)]


async def wait_scraped(picker: PickerHarness, check, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check({e.key: e.metrics for e in picker.state(POOL).endpoints()}):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the scraper never saw the expected metrics")


async def pick(picker: PickerHarness, headers=None):
    stream = picker.stream(POOL)
    await stream.send(request_headers(headers), request_body(b'{"model": "m", "prompt": "hello"}'))
    (reply,) = await stream.read(1)
    return reply


@pytest.mark.parametrize("profile", ["poolgate-default", "llmd-default"])
async def test_picks_avoid_the_pod_whose_scraped_queue_is_long(profile):
    async with SimulatedServers(["127.0.0.30:0", "127.0.0.31:0"], SLOW) as pods:
        busy, idle = pods.addresses
        view = PickerView({POOL: pool_view(POOL, [busy, idle])})
        async with (
            PickerHarness(view, profile=profile, scrape_interval=0.02) as picker,
            aiohttp.ClientSession() as session,
        ):
            load = await fill_queue(session, busy, 8)
            try:
                await wait_scraped(picker, lambda m: m[busy].waiting >= 5 and m[idle].updated_at is not None)
                for _ in range(5):
                    reply = await pick(picker)
                    chosen = header_values(reply.request_headers.response.header_mutation)
                    assert chosen["x-gateway-destination-endpoint"].split(",")[0] == idle
                assert picker.sample("inference_pool_average_queue_size", {"name": "pool"}) >= 2.5
                assert picker.sample("inference_pool_ready_pods", {"name": "pool"}) == 2
            finally:
                for task in load:
                    task.cancel()
                await asyncio.gather(*load, return_exceptions=True)


async def test_sheddable_requests_get_429_under_real_saturation():
    async with SimulatedServers(["127.0.0.32:0", "127.0.0.33:0"], SLOW) as pods:
        view = PickerView({POOL: pool_view(POOL, pods.addresses, priorities={"batch": -1})})
        async with PickerHarness(view, scrape_interval=0.02) as picker, aiohttp.ClientSession() as session:
            load = [task for address in pods.addresses for task in await fill_queue(session, address, 8)]
            try:
                await wait_scraped(picker, lambda m: all(x.waiting >= 5 for x in m.values()))
                shed = await pick(picker, {"x-gateway-inference-objective": "batch"})
                assert shed.immediate_response.status.code == 429
                served = await pick(picker)  # priority 0 is never shed
                assert header_values(served.request_headers.response.header_mutation)
            finally:
                for task in load:
                    task.cancel()
                await asyncio.gather(*load, return_exceptions=True)
