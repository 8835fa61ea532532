"""A DNS server on loopback that answers A queries from a table, standing in for the cluster's DNS where a test runs
what the hooks generate for Kubernetes (Envoy resolves pool endpoints and pickers by their Service names):

    with DnsServer({"pool-endpoints.default.svc.cluster.local": ["127.0.20.10", "127.0.20.11"]}) as dns:
        ...  # point Envoy's resolver at dns.address

Unknown names get NXDOMAIN; a known name asked for another record type (AAAA) gets an empty answer."""

from __future__ import annotations

import socket
import struct
import threading

A, IN = 1, 1
NOERROR, NXDOMAIN = 0, 3
TTL_S = 5


class DnsServer:
    """Answers DNS over UDP on 127.0.0.1 (a free port) from `records` (name -> IPv4 addresses), in a thread."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = {name.lower().rstrip("."): list(ips) for name, ips in records.items()}
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.address: tuple[str, int] = self._socket.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            answer = self.answer(query)
            if answer is not None:
                self._socket.sendto(answer, client)

    def answer(self, query: bytes) -> bytes | None:
        """The response to one query message; None for a message that is not a query with one question."""
        if len(query) < 12:
            return None
        ident, flags, questions = struct.unpack("!HHH", query[:6])
        if flags & 0x8000 or questions != 1:
            return None
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        if offset + 5 > len(query):
            return None
        qtype, _ = struct.unpack("!HH", query[offset + 1 : offset + 5])
        question = query[12 : offset + 5]
        ips = self.records.get(".".join(labels).lower())
        found = ips if qtype == A and ips else []
        code = NXDOMAIN if ips is None else NOERROR
        header = struct.pack("!HHHHHH", ident, 0x8180 | code, 1, len(found), 0, 0)
        records = b"".join(
            struct.pack("!HHHIH", 0xC00C, A, IN, TTL_S, 4) + socket.inet_aton(ip) for ip in found
        )  # 0xC00C: the name of the question
        return header + question + records
