"""The gRPC face of the picker: the ext_proc ExternalProcessor service, gRPC health, and TLS.

One `PickerServer` holds two grpc.aio servers: ext_proc (plus health) on the gRPC port, health alone on the health
port. Health services: `liveness` (serving while the process runs), `readiness`, `""` and
`envoy.service.ext_proc.v3.ExternalProcessor` (serving once discovery has synced, not serving while shutting down).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from picker.kvcache.tokenizer import TokenizeQueue
from picker.server import protocol as p
from picker.server.errors import RequestError
from picker.server.exchange import Exchange, ExchangeSettings, ModelRouterExchange, PickerExchange
from picker.server.handoff import Handoffs
from picker.server.metrics import PickerMetrics
from picker.server.models import model_list
from picker.server.pools import PoolRegistry
from poolgate.api.contract import (
    CALLOUT_METADATA_KEY,
    MODEL_LIST_METADATA_KEY,
    MODEL_ROUTER,
    OBSERVE_RESPONSE,
    PICK_REQUEST,
    POOL_METADATA_KEY,
)

log = logging.getLogger("poolgate.picker")

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
READY_SERVICES = ("", "readiness", EXT_PROC_SERVICE)
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STREAM_BACKLOG = 100_000  # new ext_proc streams waiting for the event loop before gRPC refuses any (see start)
STREAM_WAIT_S = 3600  # seconds a new stream may wait for the event loop before gRPC drops it (see start)


class ExternalProcessor(ext_proc_grpc.ExternalProcessorServicer):
    """The ext_proc service: one `Exchange` per stream."""

    def __init__(self, pools: PoolRegistry, metrics: PickerMetrics, settings: ExchangeSettings) -> None:
        self.pools = pools
        self.metrics = metrics
        self.settings = settings
        self.handoffs = Handoffs()  # picks waiting for the call that observes their response
        self.tokenize_queue = TokenizeQueue()  # slow per-request work (tokenizing) off the event loop

    def exchange(self, metadata: Iterable[tuple[str, str]] | None) -> Exchange:
        """A new exchange for a stream with this gRPC initial metadata (pool and callout): the model router's for
        its callout (or when that is the server's only role), else the endpoint picker's (which hands its pick over
        to an observer call when the callout says one follows)."""
        pool_key = None
        callout = None
        model_sources = None
        for key, value in metadata or ():
            if key == POOL_METADATA_KEY:
                pool_key = value
            elif key == CALLOUT_METADATA_KEY:
                callout = value
            elif key == MODEL_LIST_METADATA_KEY:
                model_sources = value
        role = self.settings.role
        if role == "model-router" or (role == "both" and callout == MODEL_ROUTER):
            return ModelRouterExchange(self.settings, self.metrics, self.pools, model_sources)
        handoffs = self.handoffs if callout == PICK_REQUEST else None
        exchange = PickerExchange(self.settings, self.metrics, self.pools, pool_key, handoffs)
        if callout == MODEL_ROUTER:
            exchange.failure = RequestError(
                500,
                "This endpoint picker does not run the model router "
                "(start it with --role model-router or --role both).",
            )
        return exchange

    async def Process(self, request_iterator, context) -> None:
        """One stream = one HTTP request: read Envoy's messages, answer each as the exchange says; or, for an
        observer call, follow the response of the pick it claims."""
        metadata = context.invocation_metadata()
        if (CALLOUT_METADATA_KEY, OBSERVE_RESPONSE) in (metadata or ()):
            await self._observe(context)
            return
        exchange = self.exchange(metadata)
        read, write, eof = context.read, context.write, grpc.aio.EOF
        try:
            while True:
                request = await read()
                if request is eof:
                    exchange.end()
                    return
                if isinstance(exchange, ModelRouterExchange) and exchange.lists_models(request):
                    await write(p.immediate_ok(await model_list(exchange.model_sources or "{}")))
                    return
                work = exchange.preparation(request)
                if work is not None:
                    await self.tokenize_queue.run(work)
                try:
                    replies = exchange.on_message(request)
                except Exception as error:  # a bug must answer the request, not hang it
                    replies = exchange.internal_error(error)
                for reply in replies:
                    await write(reply)
                if exchange.stream_done():
                    return
        finally:
            exchange.close()

    async def _observe(self, context) -> None:
        """An observe-only call: its first message (the request headers) names the pick it follows; the response's
        messages go to that exchange, and nothing is answered (Envoy does not wait for answers, and ignores them)."""
        read, eof = context.read, grpc.aio.EOF
        first = await read()
        exchange = self.handoffs.claim(p.pick_id(first)) if first is not eof else None
        if exchange is None:
            return  # not picked here (refused, or picked by another picker process): nothing to follow
        exchange.observe()
        try:
            while not exchange.finished:
                request = await read()
                if request is eof:
                    return
                try:
                    exchange.on_message(request)
                except Exception as error:  # a bug must not keep the booking: log it, release below
                    exchange.internal_error(error)
                    return
        finally:
            exchange.abandon()


@dataclass(frozen=True)
class Listen:
    """Where the servers listen, and with which TLS key pair (PEM) for ext_proc, if any."""

    host: str = "0.0.0.0"
    grpc_port: int = 9002
    health_port: int = 9003
    tls: tuple[bytes, bytes] | None = None  # (private key, certificate chain)


class PickerServer:
    """The ext_proc and health gRPC servers of one picker process."""

    def __init__(self, processor: ExternalProcessor, listen: Listen) -> None:
        self.processor = processor
        self.listen = listen
        self.health = health_aio.HealthServicer()
        self._servers: list[grpc.aio.Server] = []
        self.grpc_port = 0
        self.health_port = 0

    async def start(self) -> None:
        """Bind and start both servers (ports 0 pick free ports; `grpc_port` / `health_port` tell which)."""
        # no SO_REUSEPORT: a second process on the same port must be an error, not a silent traffic split
        options = [
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # Streams that arrived but that the event loop has not taken up yet: past 1,000 of them gRPC refuses new
            # ones at random (RESOURCE_EXHAUSTED, certainly past 3,000), and it drops those left waiting 30 s; Envoy
            # answers either with a 503. A burst of requests is a burst of streams (one per request), so the backlog
            # is as large as Envoy's own limits (100,000 requests per cluster), and a stream waits as long as
            # Envoy lets its request live (the stream idle timeout, an hour by default).
            ("grpc.server.max_pending_requests", STREAM_BACKLOG),
            ("grpc.server.max_pending_requests_hard_limit", STREAM_BACKLOG),
            ("grpc.server_max_unrequested_time_in_server", STREAM_WAIT_S),
        ]
        main = grpc.aio.server(options=options)
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(self.processor, main)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, main)
        address = f"{_host(self.listen.host)}:{self.listen.grpc_port}"
        health_address = f"{_host(self.listen.host)}:{self.listen.health_port}"
        health = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, health)
        try:
            if self.listen.tls is not None:
                self.grpc_port = main.add_secure_port(address, grpc.ssl_server_credentials([self.listen.tls]))
            else:
                self.grpc_port = main.add_insecure_port(address)
            self.health_port = health.add_insecure_port(health_address)
        except RuntimeError as error:  # grpc's way of saying the address is taken or not local
            raise OSError(f"cannot listen on {address} and {health_address}: {str(error).split(';')[0]}") from None
        await self.health.set("liveness", _SERVING)
        for service in READY_SERVICES:
            await self.health.set(service, _NOT_SERVING)
        await main.start()
        self._servers.append(main)
        await health.start()
        self._servers.append(health)

    async def set_ready(self, ready: bool) -> None:
        """Report readiness (discovery synced) on the health services."""
        for service in READY_SERVICES:
            await self.health.set(service, _SERVING if ready else _NOT_SERVING)

    async def stop(self, grace: float = 2.0) -> None:
        """Report not serving, let streams in flight finish for `grace` seconds, then stop."""
        await self.set_ready(False)
        for server in self._servers:
            await server.stop(grace)
        self._servers.clear()


def _host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def load_key_pair(directory: str | Path) -> tuple[bytes, bytes]:
    """The (tls.key, tls.crt) PEM pair of a directory, as Kubernetes TLS Secrets mount them."""
    directory = Path(directory)
    return (directory / "tls.key").read_bytes(), (directory / "tls.crt").read_bytes()


def self_signed_key_pair(hosts: list[str] | None = None) -> tuple[bytes, bytes]:
    """A fresh self-signed certificate (EC P-256, one year) and its key, PEM-encoded: (key, certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "poolgate-picker")])
    alternative: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in hosts or []:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternative.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)
