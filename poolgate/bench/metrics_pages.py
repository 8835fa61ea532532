"""Realistic vLLM `/metrics` pages served cheaply over HTTP, for the scrape benchmark and the scraper's tests.

`vllm_page` takes the page captured from a real vLLM 0.32 (`tests/simulator/data/vllm-0.32-cpu-metrics.txt`: 53 KB,
mostly histograms the picker does not read) and sets the queue, batch and KV values, plus LoRA info series as a vLLM
serving adapters shows them. `PageServer` answers `GET /metrics` on many loopback addresses from one event loop with
prepared bytes, honouring prometheus-client's `?name[]=` selection as vLLM's server does (or not, to stand for
servers that ignore it), so that what it costs per scrape is the HTTP exchange alone. An address may answer several
pages in turn, one per request, to stand for a busy engine whose values change between any two scrapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlsplit

CAPTURED_PAGE = Path(__file__).resolve().parents[2] / "tests" / "simulator" / "data" / "vllm-0.32-cpu-metrics.txt"

_LORA_FAMILY = """\
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{{max_lora="4",running_lora_adapters="{old}",waiting_lora_adapters=""}} 1.7964139e+09
vllm:lora_requests_info{{max_lora="4",running_lora_adapters="{running}",waiting_lora_adapters="{waiting}"}} 1.7964140e+09
"""


def captured_page(path: Path = CAPTURED_PAGE) -> str:
    """The captured vLLM page; raises FileNotFoundError naming where it was looked for."""
    if not path.is_file():
        raise FileNotFoundError(f"the captured vLLM /metrics page is not at {path} (it ships in the repository)")
    return path.read_text()


def vllm_page(
    captured: str, *, waiting: int, running: int, kv_usage: float, lora_running: str = "", lora_waiting: str = ""
) -> str:
    """The captured page with these queue, batch and KV values, and two LoRA info series (an older one that ran
    `old-adapter`, the newest one with these adapters)."""
    labels = '{engine="0",model_name="tiny"}'
    page = captured
    for name, value in (
        ("vllm:num_requests_waiting", float(waiting)),
        ("vllm:num_requests_running", float(running)),
        ("vllm:kv_cache_usage_perc", kv_usage),
    ):
        line = f"{name}{labels} 0.0\n"
        if line not in page:
            raise ValueError(f"the captured page has no line {line.strip()!r}")
        page = page.replace(line, f"{name}{labels} {value!r}\n")
    return page + _LORA_FAMILY.format(old="old-adapter", running=lora_running, waiting=lora_waiting)


def restrict_page(page: str, names: Iterable[str]) -> str:
    """The page with only the samples named, and their families' HELP and TYPE lines (prometheus-client's
    `restricted_registry`)."""
    wanted = set(names)
    kept: list[str] = []
    comments: list[str] = []
    for line in page.splitlines(keepends=True):
        if line.startswith("#"):
            comments.append(line)
            continue
        if line.split("{", 1)[0].split(" ", 1)[0] in wanted:
            kept.extend(comments)
            kept.append(line)
        comments = []
    return "".join(kept)


def http_response(body: bytes) -> bytes:
    """A complete HTTP/1.1 200 answer carrying a metrics page."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


class PageServer:
    """Serves prepared pages on `GET /metrics` (keep-alive), from the running event loop.

    `pages` maps an IP to its page, or to the pages it answers in turn (the next one at each request, in a cycle);
    with `honour_names` a `?name[]=` selection is answered with only those samples. `served` counts the answers;
    `hang` is a set of IPs that accept connections and never answer. After `freeze()` every address keeps answering
    the page it answered last.
    """

    def __init__(
        self, pages: Mapping[str, str | Sequence[str]], *, honour_names: bool = True, hang: Iterable[str] = ()
    ) -> None:
        self.pages = {address: [page] if isinstance(page, str) else list(page) for address, page in pages.items()}
        self.honour_names = honour_names
        self.hang = set(hang)
        self.served = 0
        self.ports: dict[str, int] = {}
        self.turns = dict.fromkeys(self.pages, -1)  # the page each address answered last (-1: none yet)
        self.frozen = False
        self._answers: dict[tuple[str, str, int], bytes] = {}
        self._servers: list[asyncio.Server] = []
        self.connections: set[asyncio.Transport] = set()

    async def start(self, port: int = 0) -> dict[str, int]:
        """Listen on every address (port 0: any free port each); returns each address's port."""
        loop = asyncio.get_running_loop()
        for address in self.pages:
            server = await loop.create_server(partial(_PageProtocol, self, address), address, port)
            self._servers.append(server)
            self.ports[address] = server.sockets[0].getsockname()[1]
        return self.ports

    async def stop(self) -> None:
        """Stop listening and drop the connections."""
        for server in self._servers:
            server.close()
        for transport in list(self.connections):
            transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def replace(self, address: str, pages: str | Sequence[str]) -> None:
        """Answer other pages on an address from its next request on."""
        self.pages[address] = [pages] if isinstance(pages, str) else list(pages)
        self.turns[address] = -1
        for key in [key for key in self._answers if key[0] == address]:
            del self._answers[key]

    def freeze(self) -> dict[str, int]:
        """From now on, answer every address's last page again; returns which page each address answered last."""
        self.frozen = True
        return dict(self.turns)

    def answer(self, address: str, target: str) -> bytes | None:
        """The bytes that answer a request for `target` on `address` (None for an address that hangs)."""
        if address in self.hang:
            return None
        pages = self.pages[address]
        turn = self.turns[address]
        if not self.frozen or turn < 0:
            turn = self.turns[address] = (turn + 1) % len(pages)
        answer = self._answers.get((address, target, turn))
        if answer is None:
            selection = parse_qs(urlsplit(target).query).get("name[]", []) if self.honour_names else []
            page = pages[turn]
            body = restrict_page(page, selection) if selection else page
            answer = self._answers[(address, target, turn)] = http_response(body.encode())
        return answer


class _PageProtocol(asyncio.Protocol):
    def __init__(self, server: PageServer, address: str) -> None:
        self.server = server
        self.address = address
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.server.connections.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.connections.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request_line = self.buffer[: self.buffer.find(b"\r\n")].decode("latin-1")
            self.buffer = self.buffer[end + 4 :]
            parts = request_line.split(" ")
            answer = self.server.answer(self.address, parts[1] if len(parts) == 3 else "/")
            if answer is not None and self.transport is not None:
                self.transport.write(answer)
                self.server.served += 1
