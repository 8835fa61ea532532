"""The load exchange over real UDP sockets on loopback: two replicas' schedulers book each other's requests, batched
per event-loop iteration; a replica ignores its own datagrams and junk; peers are HOST:PORT entries."""

import asyncio
import random
import socket

import orjson
import pytest

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import PromptInput, Scheduler, SchedulingRequest, builtin_config
from picker.scheduling.loadbook import PICKED, LoadBook
from picker.server.loadexchange import LoadExchange, parse_peers

POOL = "default/pool"


def replica(peers):
    pool = PoolState(clock=lambda: 0.0)
    pool.set_endpoints(EndpointSpec(f"10.0.0.{i}", 8000) for i in (1, 2))
    config = builtin_config("poolgate-default", random.Random(0))
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation, fallbacks=1)
    book = LoadBook(scheduler, ttl=30.0)
    exchange = LoadExchange(lambda: {POOL: book}, lambda: 0.0, "127.0.0.1", 0, peers)
    scheduler.outbox = lambda event: exchange.announce(POOL, event)
    return scheduler, book, exchange


def transport_payload() -> bytes:
    """A well-formed announcement of one pick by a replica named 'intruder'."""
    event = [PICKED, 1, EndpointSpec("10.0.0.1", 8000).key, 4000, 4000]
    return orjson.dumps({"from": "intruder", "pools": {POOL: [event]}})


async def settle(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_two_replicas_book_each_others_requests_over_udp():
    async def scenario():
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reserve the second replica's port
        listener.bind(("127.0.0.1", 0))
        second_port = listener.getsockname()[1]
        listener.close()
        first, first_book, first_exchange = replica([("127.0.0.1", second_port)])
        await first_exchange.start()
        second, second_book, second_exchange = replica([("localhost", first_exchange.port)])
        second_exchange.port = second_port
        await second_exchange.start()
        first_exchange.peers.append(("127.0.0.1", first_exchange.port))  # itself too, as a headless Service lists
        await first_exchange._resolve()
        try:
            decisions = [first.schedule(SchedulingRequest("m", PromptInput(bytes([i]) * 400)), 0.0) for i in range(3)]
            await settle(lambda: len(second_book) == 3)
            assert second_exchange.received == 1  # the three picks of one loop iteration in one datagram
            assert sum(e.peer_inflight for e in second.pool.endpoints()) == 3
            assert sum(e.inflight for e in second.pool.endpoints()) == 0
            for decision in decisions:
                first.on_complete(decision, 1.0)
            await settle(lambda: len(second_book) == 0)
            assert first_exchange.received == 0 and len(first_book) == 0  # its own datagrams came back: ignored

            second.schedule(SchedulingRequest("m", PromptInput(b"x" * 400)), 0.0)
            await settle(lambda: len(first_book) == 1)
            transport = first_exchange._transport
            assert transport is not None
            transport.sendto(b"not json", ("127.0.0.1", second_exchange.port))
            transport.sendto(b'{"from": 1}', ("127.0.0.1", second_exchange.port))
            await settle(lambda: second_exchange.rejected == 2)

            stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a valid announcement from a non-peer
            stranger.sendto(transport_payload(), ("127.0.0.1", second_exchange.port))
            stranger.close()
            await settle(lambda: second_exchange.strangers == 1)
            assert len(second_book) == 0 and second_exchange.received == 2
        finally:
            await first_exchange.stop()
            await second_exchange.stop()

    asyncio.run(scenario())


def test_peers_are_host_port_entries():
    assert parse_peers("a:9005, [::1]:9005,10.0.0.1:1,") == [("a", 9005), ("::1", 9005), ("10.0.0.1", 1)]
    for bad in ("a", "a:", ":9005", "a:70000", "a:x"):
        with pytest.raises(ValueError, match="not HOST:PORT"):
            parse_peers(bad)
