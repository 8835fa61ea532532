"""The model-list poller against real HTTP servers on loopback addresses: simulated vLLM pods (adapters loaded at
start and at run time) and pods whose `/v1/models` answer the test controls."""

import asyncio
import logging

import pytest
from aiohttp import web

from picker.pool import EndpointSpec, PoolState
from picker.pool.served import ServedModelsPoller, read_model_list
from simulator.config import ServerConfig
from simulator.server import SimulatedServers
from tests.support.aio import until


def pool_with(*addresses):
    pool = PoolState()
    pool.set_endpoints([EndpointSpec(host, int(port)) for host, port in (a.rsplit(":", 1) for a in addresses)])
    return pool


def served(pool, key):
    return pool.get(key).metrics.served_models


async def test_the_poller_reads_each_servers_models_and_follows_runtime_loads():
    async with SimulatedServers(
        ["127.0.9.60:0", "127.0.9.61:0"], ServerConfig(model="base"), {"ad1": "/l/ad1"}
    ) as sims:
        first, second = (server.address for server in sims)
        pool = pool_with(first, second)
        poller = ServedModelsPoller(pool, interval=60)  # only the first asks and the ones the test makes
        await poller.start()
        try:
            await until(lambda: served(pool, first) is not None and served(pool, second) is not None)
            assert served(pool, first) == {"base", "ad1"} and pool.known_adapters == {"ad1"}
            sims[1].model.load_adapter("ad2", "/l/ad2")
            sims[1].model.unload_adapter("ad1")
            assert served(pool, second) == {"base", "ad1"}  # not asked again yet
            await poller.poll(second)
            assert served(pool, second) == {"base", "ad2"} and pool.known_adapters == {"ad1", "ad2"}
            pool.remove(second)
            await poller.poll(second)  # an endpoint that left is not asked
        finally:
            await poller.stop()


class ModelsPod:
    """An HTTP server whose `/v1/models` answer the test controls, counting the asks."""

    def __init__(self, address, keepalive_timeout=75.0):
        self.address = address
        self.keepalive_timeout = keepalive_timeout  # a connection idle this long is closed by the server
        self.answer = (200, '{"object": "list", "data": [{"id": "base"}, {"id": "ad1", "parent": "base"}]}')
        self.asks = 0
        self.connections = set()  # the client ports asked from: one per connection
        self.runner = None

    async def models(self, request):
        self.asks += 1
        self.connections.add(request.transport.get_extra_info("peername")[1])
        status, text = self.answer
        return web.Response(status=status, text=text, content_type="application/json")

    async def __aenter__(self):
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        self.runner = web.AppRunner(app, keepalive_timeout=self.keepalive_timeout)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.address, 0)
        await site.start()
        self.key = f"{self.address}:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info):
        await self.runner.cleanup()


@pytest.mark.parametrize(
    "answer",
    [(404, '{"detail": "Not Found"}'), (200, "<html>not json</html>"), (200, '{"object": "list"}'), (500, "")],
)
async def test_an_unreadable_answer_keeps_the_last_list_and_never_makes_one_up(answer):
    async with ModelsPod("127.0.9.62") as pod:
        pool = pool_with(pod.key)
        poller = ServedModelsPoller(pool, interval=60)
        await poller.start()
        try:
            await until(lambda: served(pool, pod.key) is not None)
            pod.answer = answer
            await poller.poll(pod.key)
            assert pod.asks == 2 and served(pool, pod.key) == {"base", "ad1"}
        finally:
            await poller.stop()
        pool = pool_with(pod.key)  # a server that never answers a list has none
        poller = ServedModelsPoller(pool, interval=60)
        await poller.start()
        try:
            await poller.poll(pod.key)
            assert pod.asks == 3 and served(pool, pod.key) is None
        finally:
            await poller.stop()


async def test_every_endpoint_is_asked_once_per_interval_and_a_dead_one_is_no_trouble():
    async with ModelsPod("127.0.9.63") as pod:
        pool = pool_with(pod.key, "127.0.9.64:1")  # nothing listens on the second
        poller = ServedModelsPoller(pool, interval=0.2, timeout=0.5)
        await poller.start()
        await asyncio.sleep(1.05)
        await poller.stop()
        assert 5 <= pod.asks <= 7  # once at start, then every 0.2 s
        assert served(pool, pod.key) == {"base", "ad1"} and served(pool, "127.0.9.64:1") is None


def test_a_model_list_is_read_with_its_adapters_and_anything_else_is_refused():
    body = b'{"data": [{"id": "base", "parent": null}, {"id": "ad1", "parent": "base"}, {"id": 3}, "x"]}'
    assert read_model_list(body) == (["base", "ad1"], ["ad1"])
    for bad in (b"[]", b'{"data": {}}', b"not json"):
        with pytest.raises(ValueError):
            read_model_list(bad)


async def test_an_ask_that_crosses_the_servers_close_of_its_idle_connection_is_not_a_failure(caplog):
    """vLLM's server (uvicorn) closes a kept-alive connection idle for 5 s, the poller's interval: the close often
    crosses the next ask on the wire. aiohttp sends such a GET again on a new connection (without that, about every
    other ask failed here), so every ask is read."""
    caplog.set_level(logging.INFO, logger="picker.pool.served")
    async with ModelsPod("127.0.9.65", keepalive_timeout=0.05) as pod:
        pool = pool_with(pod.key)
        poller = ServedModelsPoller(pool, interval=0.051, timeout=0.5)
        await poller.start()
        try:
            await until(lambda: len(pod.connections) >= 20, timeout=20)  # the server closed its connection 20 times
        finally:
            await poller.stop()
    assert not [record for record in caplog.records if record.getMessage() == "model list unreadable"]
    assert served(pool, pod.key) == {"base", "ad1"}
