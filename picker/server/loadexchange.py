"""The load exchange: picker replicas of the same pools tell each other, over UDP, which requests they sent where.

Each replica announces the load events of its schedulers (`picker.scheduling.loadbook`: a pick, its first token,
its end) to every peer and books the peers' events in its pools' load books, so that every replica predicts around
the whole load of the pool, not only its own share. A datagram is one orjson object

    {"from": "<this process's name>", "pools": {"<namespace>/<name>": [event, ...], ...}}

sent once per event-loop iteration with everything announced during it (split when large). Datagrams may be lost:
nothing waits for them, and the load books forget what is not ended within their TTL (`--load-exchange-ttl`), so a
lost end or a dead peer leaves no phantom load. Each process names itself anew at start, so a restarted peer's
requests never mix with its former self's. A replica ignores its own datagrams (a DNS name that lists every replica
lists itself too) and those for pools it does not serve.

Peers are `HOST:PORT` entries; a host name is resolved again every few seconds and each of its addresses is a peer
(on Kubernetes, a headless Service selecting the replicas names every replica's pod).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from picker.scheduling.loadbook import LoadBook, LoadEvent

log = logging.getLogger("poolgate.picker")

MAX_EVENTS_PER_DATAGRAM = 200  # a pick is ~60 bytes: datagrams stay well under the 64 KiB UDP limit
RESOLVE_SECONDS = 5.0  # how often peer host names are resolved again
EXPIRE_SECONDS = 1.0  # how often the load books forget requests past their TTL


def parse_peers(text: str) -> list[tuple[str, int]]:
    """`HOST:PORT,...` (IPv6 hosts in brackets) -> [(host, port)]; ValueError naming the bad entry."""
    peers = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"load exchange peer {entry!r} is not HOST:PORT")
        peers.append((host, int(port)))
    return peers


class LoadExchange(asyncio.DatagramProtocol):
    """Announces this replica's load events to its peers and books theirs (see the module docstring).

    `books()` returns the load books of the pools this replica serves, by `namespace/name`.
    """

    def __init__(
        self,
        books: Callable[[], Mapping[str, LoadBook]],
        clock: Callable[[], float],
        host: str,
        port: int,
        peers: Sequence[tuple[str, int]],
    ) -> None:
        self.books = books
        self.clock = clock
        self.host = host
        self.port = port
        self.peers = list(peers)
        self.name = f"{socket.gethostname()}/{os.getpid()}/{os.urandom(4).hex()}"
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.addresses: list[tuple[str, int]] = []  # the peers' resolved (address, port)
        self.received = 0  # datagrams booked
        self.rejected = 0  # datagrams that were not a load announcement
        self.strangers = 0  # datagrams from an address that is not a peer's: ignored
        self._peer_addresses: frozenset[tuple[str, int]] = frozenset()
        self._pending: dict[str, list[LoadEvent]] = {}
        self._flush_scheduled = False
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Listen for the peers and start resolving them."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, self.port), family=self.family
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        await self._resolve()
        self._tasks = [
            asyncio.create_task(self._every(RESOLVE_SECONDS, self._resolve), name="load exchange peers"),
            asyncio.create_task(self._every(EXPIRE_SECONDS, self._expire), name="load exchange expiry"),
        ]
        log.info("load exchange listening", extra={"port": self.port, "peers": [f"{h}:{p}" for h, p in self.peers]})

    async def stop(self) -> None:
        """Stop listening and announcing."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def announce(self, pool: str, event: LoadEvent) -> None:
        """Queue one of this replica's events for the peers (sent at the end of this event-loop iteration)."""
        if self._transport is None or not self.addresses:
            return
        self._pending.setdefault(pool, []).append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        transport = self._transport
        if transport is None:
            return
        for pool, events in pending.items():
            for start in range(0, len(events), MAX_EVENTS_PER_DATAGRAM):
                chunk = events[start : start + MAX_EVENTS_PER_DATAGRAM]
                datagram = orjson.dumps({"from": self.name, "pools": {pool: chunk}})
                for address in self.addresses:
                    transport.sendto(datagram, address)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if tuple(addr[:2]) not in self._peer_addresses:  # only the peers named by --load-exchange-peers add load
            self.strangers += 1
            return
        try:
            message = orjson.loads(data)
            peer, pools = message["from"], message["pools"]
            if not isinstance(peer, str) or not isinstance(pools, dict):
                raise TypeError("not a load announcement")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.rejected += 1
            return
        if peer == self.name:
            return
        self.received += 1
        now = self.clock()
        books = self.books()
        for pool, events in pools.items():
            book = books.get(pool)
            if book is not None and isinstance(events, list):
                book.apply(peer, events, now)

    def error_received(self, exc: Exception) -> None:
        """A peer's port refused a datagram (e.g. it restarts): nothing to do, the next datagram tries again."""

    async def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        addresses: list[tuple[str, int]] = []
        for host, port in self.peers:
            try:
                infos = await loop.getaddrinfo(host, port, family=self.family, type=socket.SOCK_DGRAM)
            except OSError as error:
                log.warning(
                    "load exchange peer does not resolve", extra={"peer": f"{host}:{port}", "error": str(error)}
                )
                continue
            for *_, sockaddr in infos:
                address = (str(sockaddr[0]), int(sockaddr[1]))
                if address not in addresses:
                    addresses.append(address)
        self.addresses = addresses
        self._peer_addresses = frozenset(addresses)

    def _expire(self) -> None:
        now = self.clock()
        for book in list(self.books().values()):
            book.expire(now)

    async def _every(self, seconds: float, action: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            result = action()
            if asyncio.iscoroutine(result):
                await result
