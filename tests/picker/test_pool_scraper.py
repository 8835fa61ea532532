"""The metrics scraper against real HTTP servers on loopback addresses (one address per simulated pod)."""

import asyncio
import contextlib
import logging
from urllib.parse import unquote

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from picker.pool import EndpointSpec, MetricsScraper, PoolState
from picker.pool.scraper import ScrapeSlots, slot_count
from poolgate.bench.metrics_pages import PageServer, captured_page, vllm_page
from poolgate.bench.scrape import endpoint_values
from simulator.config import ServerConfig
from simulator.server import SimulatedServers
from tests.support.aio import until


class FakePod:
    """An HTTP server on its own loopback address whose /metrics answer the test controls."""

    def __init__(self, address):
        self.address = address
        self.mode = "ok"
        self.waiting = 0
        self.requests = 0
        self.targets = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self.runner = None
        self.port = None
        self.connections = set()  # the client ports asked from: one per connection

    async def metrics(self, request):
        self.requests += 1
        self.connections.add(request.transport.get_extra_info("peername")[1])
        self.targets.append(request.path_qs)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.mode == "hang":
                await self.release.wait()
            if self.mode == "500":
                return web.Response(status=500, text="internal error")
            if self.mode == "drops-named-series" and "name[]" in request.query:
                return web.Response(text="")
            if self.mode == "garbage":
                return web.Response(text="<html>\x00 this is not prometheus {{{ </html>")
            return web.Response(
                text=(
                    "# TYPE vllm:num_requests_waiting gauge\n"
                    f'vllm:num_requests_waiting{{model_name="m"}} {self.waiting}\n'
                    'vllm:num_requests_running{model_name="m"} 1\n'
                    'vllm:kv_cache_usage_perc{model_name="m"} 0.25\n'
                )
            )
        finally:
            self.in_flight -= 1

    async def start(self, port=0, keepalive_timeout=75.0):
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        # like a real server, notice disconnects and close a kept-alive connection idle for `keepalive_timeout` s
        self.runner = web.AppRunner(app, handler_cancellation=True, keepalive_timeout=keepalive_timeout)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.address, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    @property
    def spec(self):
        return EndpointSpec(self.address, self.port, pod_name=f"pod-{self.address}")

    async def stop(self):
        self.release.set()
        await self.runner.cleanup()


@pytest.fixture
async def pods():
    started = []

    async def make(address, **server_options):
        pod = await FakePod(address).start(**server_options)
        started.append(pod)
        return pod

    yield make
    for pod in started:
        await pod.stop()


def errors(registry, reason):
    return registry.get_sample_value("inference_extension_metrics_scrape_errors_total", {"reason": reason}) or 0.0


async def test_scrapes_keep_last_good_values_through_500s_and_recover(pods, caplog):
    a, b = await pods("127.0.0.21"), await pods("127.0.0.22")
    a.waiting, b.waiting = 3, 8
    pool = PoolState()
    pool.set_endpoints([a.spec, b.spec])
    registry = CollectorRegistry()
    caplog.set_level(logging.INFO, logger="picker.pool.scraper")
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=registry) as scraper:
        ea, eb = pool.get(a.spec.key), pool.get(b.spec.key)
        await until(lambda: ea.metrics.updated_at is not None and eb.metrics.updated_at is not None)
        assert (ea.metrics.waiting, eb.metrics.waiting, eb.metrics.kv_usage) == (3, 8, 0.25)
        assert scraper.polled_endpoints() == {a.spec.key, b.spec.key}

        b.mode = "500"
        await until(lambda: eb.metrics.scrape_errors >= 3)
        stale_since = eb.metrics.updated_at
        assert eb.metrics.waiting == 8 and "HTTP 500" in eb.metrics.last_error
        assert eb.metrics_age(pool.clock()) > 0.04
        assert ea.metrics.updated_at > stale_since  # the healthy pod keeps being scraped
        assert errors(registry, "http_status") >= 3

        b.mode, b.waiting = "ok", 1
        await until(lambda: eb.metrics.waiting == 1)
        assert eb.metrics.scrape_errors == 0
    failing = [r for r in caplog.records if r.getMessage().startswith("metrics scrape failing")]
    recovered = [r for r in caplog.records if r.getMessage().startswith("metrics scrape recovered")]
    assert len(failing) == 1 and failing[0].endpoint == b.spec.key  # once per transition, not per failure
    assert len(recovered) == 1


async def test_garbage_text_counts_as_invalid_metrics(pods):
    pod = await pods("127.0.0.23")
    pod.waiting = 5
    pool = PoolState()
    pool.set_endpoints([pod.spec])
    registry = CollectorRegistry()
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=registry):
        endpoint = pool.get(pod.spec.key)
        await until(lambda: endpoint.metrics.updated_at is not None)
        pod.mode, asked_before = "garbage", pod.requests
        await until(lambda: endpoint.metrics.scrape_errors >= 10)
        assert endpoint.metrics.waiting == 5
        failed = errors(registry, "invalid_metrics")
        assert failed >= 10
        # one GET per failed scrape, plus one whole-page probe after the first bad answer by name (and one in flight)
        assert pod.requests - asked_before <= failed + 2


async def test_hanging_pod_times_out_with_one_scrape_in_flight(pods):
    slow, fast = await pods("127.0.0.24"), await pods("127.0.0.25")
    slow.mode = "hang"
    pool = PoolState()
    pool.set_endpoints([slow.spec, fast.spec])
    registry = CollectorRegistry()
    async with MetricsScraper(pool, interval=0.01, timeout=0.15, registry=registry):
        await until(lambda: errors(registry, "timeout") >= 3 and fast.requests > 10, timeout=10)
        asked, timed_out = slow.requests, errors(registry, "timeout")
    assert slow.max_in_flight == 1  # never more than one scrape in flight on a slow pod
    assert asked <= timed_out + 1  # asked again only once the previous scrape timed out
    assert pool.get(slow.spec.key).metrics.updated_at is None


async def test_refused_connection_is_counted(pods):
    pool = PoolState()
    pool.set_endpoints([EndpointSpec("127.0.0.26", 9)])  # nothing listens there
    registry = CollectorRegistry()
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=registry):
        await until(lambda: errors(registry, "connection") >= 2)
    assert pool.get("127.0.0.26:9").metrics.scrape_errors >= 2
    assert pool.get("127.0.0.26:9").metrics.unreachable


async def test_a_pod_whose_server_dies_is_unreachable_until_it_answers_again(pods):
    pod = await pods("127.0.0.29")
    pool = PoolState()
    pool.set_endpoints([pod.spec])
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=CollectorRegistry()):
        endpoint = pool.get(pod.spec.key)
        await until(lambda: endpoint.metrics.updated_at is not None)
        assert not endpoint.metrics.unreachable
        await pod.runner.cleanup()  # the server dies: connections are refused
        await until(lambda: endpoint.metrics.unreachable)
        assert "127.0.0.29" in endpoint.metrics.last_error
        await pod.start(pod.port)  # restarted on the same address and port
        await until(lambda: not endpoint.metrics.unreachable)
        assert endpoint.metrics.scrape_errors == 0


async def test_a_get_that_crosses_the_servers_close_of_its_idle_connection_is_sent_again_not_failed(pods, caplog):
    """Servers close a kept-alive connection idle for their keep-alive timeout (uvicorn, vLLM's server: 5 s). With a
    scrape interval just above it the close often crosses the next GET on the wire; that GET is sent again on a new
    connection, and no scrape fails."""
    servers = [await pods(f"127.0.0.{n}", keepalive_timeout=0.05) for n in (41, 42, 43, 44)]
    pool = PoolState()
    pool.set_endpoints([server.spec for server in servers])
    registry = CollectorRegistry()
    caplog.set_level(logging.INFO, logger="picker.pool.scraper")
    async with MetricsScraper(pool, interval=0.051, timeout=0.5, registry=registry) as scraper:
        # the servers closed their idle connections over and over: 40 new connections between them
        await until(lambda: sum(len(server.connections) for server in servers) >= 40, timeout=20)
    assert scrape_errors(registry) == {}
    assert not [record for record in caplog.records if record.getMessage().startswith("metrics scrape failing")]
    assert all(pool.get(server.spec.key).metrics.scrape_errors == 0 for server in servers)
    assert scraper.resent_scrapes > 0  # the race was run into, and each time the GET was sent again
    assert scraper.good_scrapes >= 40


PAGE = b'vllm:num_requests_waiting{model_name="m"} 2\nvllm:num_requests_running{model_name="m"} 1\nvllm:kv_cache_usage_perc 0\n'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE)


@pytest.mark.parametrize(
    ("answered", "then", "resent", "failed"),
    [
        (1, "closed unanswered", True, False),  # a reused connection lost before any byte of the answer: sent again
        (1, "half answered, then closed", False, True),  # part of the answer came: the GET may have been acted on
        (0, "closed unanswered", False, True),  # a new connection: its GET is sent once
    ],
)
async def test_only_a_get_on_a_reused_connection_lost_before_any_answer_is_sent_again(answered, then, resent, failed):
    """A server that answers the first `answered` GETs of each connection in full, and the next as `then` says."""
    gets = 0

    async def serve(reader, writer):
        nonlocal gets
        with contextlib.suppress(asyncio.IncompleteReadError):  # the scraper stopped
            for number in range(answered + 1):
                await reader.readuntil(b"\r\n\r\n")
                gets += 1
                writer.write(ANSWER if number < answered else ANSWER[:20] if then.startswith("half") else b"")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.45", 0)
    pool = PoolState()
    pool.set_endpoints([EndpointSpec("127.0.0.45", server.sockets[0].getsockname()[1])])
    registry = CollectorRegistry()
    async with server, MetricsScraper(pool, interval=0.02, timeout=0.5, registry=registry) as scraper:
        await until(lambda: gets >= 12)
        assert set(scrape_errors(registry)) == ({"connection"} if failed else set())
        assert (scraper.resent_scrapes > 0) is resent
        if answered:
            assert scraper.good_scrapes >= 4 and pool.endpoints()[0].metrics.waiting == 2
        else:  # one GET per failed scrape (and perhaps one in flight)
            assert scraper.good_scrapes == 0 and gets <= errors(registry, "connection") + 1


async def test_a_hanging_pod_is_stale_but_not_unreachable(pods):
    pod = await pods("127.0.0.30")
    pod.mode = "hang"
    pool = PoolState()
    pool.set_endpoints([pod.spec])
    registry = CollectorRegistry()
    async with MetricsScraper(pool, interval=0.02, timeout=0.1, registry=registry):
        await until(lambda: errors(registry, "timeout") >= 1)
    assert not pool.get(pod.spec.key).metrics.unreachable  # slow, maybe busy: staleness decides


async def test_polling_follows_pool_membership(pods):
    a, b = await pods("127.0.0.27"), await pods("127.0.0.28")
    pool = PoolState()
    pool.set_endpoints([a.spec])
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=CollectorRegistry()) as scraper:
        await until(lambda: a.requests >= 2)
        pool.upsert(b.spec)
        await until(lambda: pool.get(b.spec.key).metrics.updated_at is not None)
        assert scraper.polled_endpoints() == {a.spec.key, b.spec.key}
        pool.remove(a.spec.key)
        assert scraper.polled_endpoints() == {b.spec.key}
        await asyncio.sleep(0.05)
        seen = a.requests
        await asyncio.sleep(0.1)
        assert a.requests == seen  # no more scrapes of a departed endpoint
    assert not scraper.running and scraper.polled_endpoints() == set()


async def test_the_ticker_sleeps_through_empty_slots(pods):
    """Two endpoints in ten slots: the ticker wakes for their two slots per interval, not for all ten."""
    a, b = await pods("127.0.0.29"), await pods("127.0.0.30")
    pool = PoolState()
    pool.set_endpoints([a.spec, b.spec])
    async with MetricsScraper(pool, interval=0.05, timeout=1.0, registry=CollectorRegistry()) as scraper:
        wakes = 0
        expire = scraper._expire

        def counted(now):
            nonlocal wakes
            wakes += 1
            expire(now)

        scraper._expire = counted
        await asyncio.sleep(0.5)  # ten intervals
        assert 0 < wakes <= 25  # 2 per interval (+ a few late ones), against 100 when every slot woke it
        before = a.requests, b.requests
        await until(lambda: a.requests > before[0] and b.requests > before[1])  # both still scraped


def test_slots_balance_and_spread_few_endpoints_over_the_whole_interval():
    assert (slot_count(0.05), slot_count(0.001), slot_count(60.0)) == (10, 1, 64)
    slots = ScrapeSlots(10)
    for i in range(25):
        slots.add(f"e{i}")
    assert sorted(len(members) for members in slots.members) == [2] * 5 + [3] * 5
    for key in list(slots.members[4]):
        slots.remove(key)
    assert slots.add("late") == 4  # joins the emptiest slot
    assert slots.add("late") == 4 and slots.members[4] == ["late"]  # once

    few = ScrapeSlots(40)
    taken = sorted(few.add(f"e{i}") for i in range(16))
    gaps = [b - a for a, b in zip(taken, taken[1:] + [taken[0] + 40])]
    assert max(gaps) <= 5  # 16 endpoints over 40 slots: spread over the interval, not packed at its start


def scrape_errors(registry):
    return {
        sample.labels["reason"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }


@pytest.mark.parametrize("honour_names", [True, False], ids=["name-selection", "whole-page"])
async def test_sixteen_real_vllm_pages_are_read_right_while_one_endpoint_hangs(honour_names):
    """16 endpoints serving the captured vLLM page (each its own values and LoRA adapters), one of which never
    answers: the others are read exactly and keep being scraped, the hung one times out once per timeout."""
    captured = captured_page()
    addresses = [f"127.0.9.{i + 1}" for i in range(16)]
    hung = addresses[5]
    values = {address: endpoint_values(i) for i, address in enumerate(addresses)}
    server = PageServer(
        {address: vllm_page(captured, **values[address]) for address in addresses},
        honour_names=honour_names,
        hang=[hung],
    )
    ports = await server.start()
    pool = PoolState()
    pool.set_endpoints(EndpointSpec(address, ports[address]) for address in addresses)
    registry = CollectorRegistry()
    requests_seen: list[str] = []
    answer = server.answer
    server.answer = lambda address, target: requests_seen.append(target) or answer(address, target)
    try:
        # a timeout well above a healthy answer's time on a loaded 2-core machine (the pages are served from this
        # event loop too): only the hung endpoint times out; the default interval, so that 16 whole pages parsed
        # every interval do not themselves slow the loop down to a timeout
        async with MetricsScraper(pool, interval=0.05, timeout=1.0, registry=registry) as scraper:
            healthy = [pool.get(f"{a}:{ports[a]}") for a in addresses if a != hung]
            await until(lambda: all(e.metrics.updated_at is not None for e in healthy), timeout=5)
            good_before = scraper.good_scrapes
            await until(  # the hang stalls nobody else: the others are scraped again and again meanwhile
                lambda: (
                    scrape_errors(registry).get("timeout", 0) >= 2
                    and scraper.good_scrapes - good_before >= 3 * len(healthy)
                ),
                timeout=15,
            )
    finally:
        await server.stop()
    for endpoint in healthy:
        expected = values[endpoint.address]
        m = endpoint.metrics
        assert (m.waiting, m.running, m.kv_usage) == (expected["waiting"], expected["running"], expected["kv_usage"])
        assert m.running_adapters == frozenset({expected["lora_running"]})  # the newest LoRA series
        assert m.waiting_adapters == frozenset(filter(None, [expected["lora_waiting"]]))
        assert (m.block_size, m.num_gpu_blocks, m.scrape_errors) == (128, 8192, 0), (endpoint.address, m.last_error)
    stuck = pool.get(f"{hung}:{ports[hung]}").metrics
    assert stuck.updated_at is None and "did not answer within 1.0 s" in stuck.last_error
    assert set(scrape_errors(registry)) == {"timeout"}, scrape_errors(registry)
    assert all(("name%5B%5D=vllm%3Anum_requests_waiting" in target) for target in requests_seen)


async def test_a_server_that_drops_series_when_asked_by_name_is_scraped_whole_from_then_on(pods):
    """A prometheus-client server whose collectors have no names answers `?name[]=` with nothing: the scraper asks
    again for the whole page, reads it, and from then on asks for the whole page, without counting an error."""
    pod = await pods("127.0.0.29")
    pod.waiting, pod.mode = 6, "drops-named-series"
    pool = PoolState()
    pool.set_endpoints([pod.spec])
    registry = CollectorRegistry()
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=registry) as scraper:
        await until(lambda: scraper.good_scrapes >= 3)
    assert pool.get(pod.spec.key).metrics.waiting == 6
    assert "name[]=" in unquote(pod.targets[0]) and all(target == "/metrics" for target in pod.targets[1:])
    assert scrape_errors(registry) == {}


async def test_the_simulator_answers_a_selection_by_name_and_the_scraper_reads_it():
    async with SimulatedServers(["127.0.9.40:0"], ServerConfig(max_loras=2)) as servers:
        server = servers[0]
        host, port = server.address.rsplit(":", 1)
        pool = PoolState()
        pool.set_endpoints([EndpointSpec(host, int(port))])
        async with MetricsScraper(pool, interval=0.02, registry=CollectorRegistry()) as scraper:
            await until(lambda: scraper.good_scrapes >= 5)
        assert pool.get(server.address).metrics.num_gpu_blocks == ServerConfig().num_gpu_blocks
        assert server.metrics_page.renders == 1  # an idle server's page is rendered once, then served from cache


async def serving(pages, honour_names=True):
    """A started PageServer and a pool holding its addresses' endpoints."""
    server = PageServer(pages, honour_names=honour_names)
    ports = await server.start()
    pool = PoolState()
    pool.set_endpoints(EndpointSpec(address, ports[address]) for address in pages)
    return server, pool, {address: f"{address}:{port}" for address, port in ports.items()}


def reads(endpoint, values):
    m = endpoint.metrics
    return (m.waiting, m.running, m.kv_usage) == (values["waiting"], values["running"], values["kv_usage"])


async def test_an_unchanged_answer_is_read_once_and_keeps_the_endpoint_fresh():
    """An idle engine answers the same bytes at every scrape: the scraper reuses its reading, yet each such scrape
    counts as a good one (the metrics' age restarts, errors clear, requests sent before it count as reflected)."""
    values = endpoint_values(3)
    server, pool, keys = await serving({"127.0.9.50": vllm_page(captured_page(), **values)})
    endpoint = pool.get(keys["127.0.9.50"])
    try:
        async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=CollectorRegistry()) as scraper:
            await until(lambda: scraper.good_scrapes >= 3)
            assert reads(endpoint, values) and scraper.unchanged_answers >= 2
            seen = []
            for _ in range(10):  # the age stays about one interval, scrape after unchanged scrape
                await asyncio.sleep(0.03)
                seen.append(endpoint.metrics.updated_at)
                assert endpoint.metrics_age(pool.clock()) < 0.2
            assert seen == sorted(seen) and len(set(seen)) >= 5

            ticket = pool.dispatch(endpoint.key, 100, pool.clock())
            assert endpoint.unreflected == 1
            unchanged = scraper.unchanged_answers
            await until(lambda: endpoint.unreflected == 0)  # reflected by a later scrape of the same bytes
            assert scraper.unchanged_answers > unchanged and endpoint.inflight == 1
            pool.release(ticket)
    finally:
        await server.stop()
    assert reads(endpoint, values) and scraper.good_scrapes - scraper.unchanged_answers == 1  # parsed once


async def test_a_busy_engine_is_read_again_at_every_scrape():
    """An endpoint whose answer changes between any two scrapes (four pages in turn, each with other values) is
    parsed every time; once it settles on one page, the pool holds exactly that page's values."""
    address = "127.0.9.51"
    captured = captured_page()
    pages = [vllm_page(captured, **endpoint_values(8, turn)) for turn in range(4)]
    server, pool, keys = await serving({address: pages})
    endpoint = pool.get(keys[address])
    try:
        async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=CollectorRegistry()) as scraper:
            waiting_seen = set()
            while scraper.good_scrapes < 12:
                await asyncio.sleep(0.005)
                waiting_seen.add(endpoint.metrics.waiting)
            assert scraper.unchanged_answers == 0
            assert len(waiting_seen - {0}) >= 2  # the values moved with the pages
            turn = server.freeze()[address]
            scraped = scraper.good_scrapes
            await until(lambda: scraper.good_scrapes >= scraped + 3)
            assert reads(endpoint, endpoint_values(8, turn))
            assert scraper.unchanged_answers >= 1  # settled: the same bytes again, read once
    finally:
        await server.stop()


async def test_an_answer_that_changes_after_a_long_idle_spell_is_read():
    """Idle for many scrapes, then the page changes (and later changes back): each change reaches the pool."""
    address = "127.0.9.52"
    captured = captured_page()
    idle, busy = endpoint_values(4), endpoint_values(4, turn=2)
    server, pool, keys = await serving({address: vllm_page(captured, **idle)})
    endpoint = pool.get(keys[address])
    try:
        async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=CollectorRegistry()) as scraper:
            await until(lambda: scraper.unchanged_answers >= 5)
            assert reads(endpoint, idle)
            for values in (busy, idle):
                server.replace(address, vllm_page(captured, **values))
                await until(lambda values=values: reads(endpoint, values))
    finally:
        await server.stop()


async def test_the_same_bytes_are_read_again_when_the_endpoint_changes_engine():
    """A reading holds for the engine mapping it was read with: an endpoint relabelled to another engine has its
    unchanged answer read again (here a vLLM page read as SGLang: its core metrics are missing)."""
    address = "127.0.9.53"
    server, pool, keys = await serving({address: vllm_page(captured_page(), **endpoint_values(5))}, honour_names=False)
    registry = CollectorRegistry()
    try:
        async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=registry) as scraper:
            await until(lambda: scraper.unchanged_answers >= 2)
            port = int(keys[address].rsplit(":", 1)[1])
            pool.upsert(EndpointSpec(address, port, labels={"llm-d.ai/engine-type": "sglang"}))
            await until(lambda: errors(registry, "invalid_metrics") >= 1)
        assert "sglang metrics missing" in pool.get(keys[address]).metrics.last_error
    finally:
        await server.stop()


async def test_an_unchanged_answer_after_failures_clears_them(pods):
    """A pod that answered 500s and then the same page as before it failed: the reused reading is a good scrape."""
    pod = await pods("127.0.0.31")
    pod.waiting = 4
    pool = PoolState()
    pool.set_endpoints([pod.spec])
    async with MetricsScraper(pool, interval=0.02, timeout=0.5, registry=CollectorRegistry()) as scraper:
        endpoint = pool.get(pod.spec.key)
        await until(lambda: scraper.good_scrapes >= 2)
        pod.mode = "500"
        await until(lambda: endpoint.metrics.scrape_errors >= 2)
        failed_at, unchanged = endpoint.metrics.updated_at, scraper.unchanged_answers
        pod.mode = "ok"
        await until(lambda: endpoint.metrics.scrape_errors == 0)
        assert endpoint.metrics.last_error == "" and endpoint.metrics.updated_at > failed_at
        assert scraper.unchanged_answers > unchanged and endpoint.metrics.waiting == 4
