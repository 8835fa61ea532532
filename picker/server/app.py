"""A running endpoint picker: discovery feeding the pools, the gRPC servers, and the Prometheus endpoint.

    picker = Picker(PickerOptions(objects_file="objects.yaml", grpc_port=0, health_port=0, metrics_port=0))
    await picker.start()          # first view loaded, servers listening (ports in picker.ports())
    ...
    await picker.stop()

`serve(options)` runs one until SIGTERM or SIGINT; `run(options)` does so on uvloop's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector

from picker.discovery.files import ObjectsFile
from picker.discovery.kube import KubeSource, api_client
from picker.discovery.view import PickerView
from picker.server.exchange import ExchangeSettings
from picker.server.loadexchange import LoadExchange
from picker.server.metrics import PickerMetrics, PoolCollector
from picker.server.metrics_http import TokenReviewAuth, serve_metrics
from picker.server.pools import PoolRegistry, PoolSettings, ProfileSource
from picker.server.service import ExternalProcessor, Listen, PickerServer, load_key_pair, self_signed_key_pair
from poolgate.api.contract import LOAD_EXCHANGE_PORT

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("poolgate.picker")


@dataclass
class PickerOptions:
    """Everything `poolgate picker` can be told (see `picker.cli` for the meaning of each)."""

    host: str = "0.0.0.0"
    grpc_port: int = 9002
    health_port: int = 9003
    metrics_port: int | None = 9090  # None: no metrics endpoint
    pools: list[str] | None = None  # None: every pool of the objects file
    objects_file: str | None = None  # None: watch Kubernetes
    kubeconfig: str | None = None
    config_file: str | None = None
    config_text: str | None = None  # the EndpointPickerConfig itself (instead of config_file)
    profile: str | None = None
    role: str = "endpoint-picker"
    fallbacks: int | None = None  # None: as the profile's picker says (maxNumOfEndpoints)
    max_body_bytes: int = 10 * 1024 * 1024
    refresh_metrics_interval: float = 0.05
    secure_serving: bool = True  # as upstream: TLS, self-signed unless cert_path
    cert_path: str | None = None
    metrics_endpoint_auth: bool = True  # as upstream; only acted on with Kubernetes (TokenReview)
    conformance_steering: bool = False
    load_exchange_port: int = LOAD_EXCHANGE_PORT  # UDP port of the load exchange (0: any free port)
    load_exchange_peers: list[tuple[str, int]] = field(default_factory=list)  # empty: no load exchange
    load_exchange_ttl: float = 60.0  # seconds after which a peer's request not announced as ended is forgotten
    kube_client: object | None = field(default=None, repr=False)  # a kubernetes ApiClient (tests)

    @property
    def model_router(self) -> bool:
        return self.role in ("model-router", "both")

    @property
    def endpoint_picker(self) -> bool:
        return self.role in ("endpoint-picker", "both")


class Picker:
    """Discovery, pools, servers and metrics of one picker process."""

    def __init__(self, options: PickerOptions, registry: CollectorRegistry | None = None) -> None:
        self.options = options
        self.registry = registry or CollectorRegistry()
        config_text = Path(options.config_file).read_text() if options.config_file else options.config_text
        self.load_exchange: LoadExchange | None = None
        if options.load_exchange_peers and options.endpoint_picker:
            self.load_exchange = LoadExchange(
                lambda: self.pools.load_books(),
                time.monotonic,
                options.host,
                options.load_exchange_port,
                options.load_exchange_peers,
            )
        settings = PoolSettings(
            ProfileSource(config_text, options.profile),
            fallbacks=options.fallbacks,
            scrape_interval=options.refresh_metrics_interval,
            announce=self.load_exchange.announce if self.load_exchange is not None else None,
            peer_ttl=options.load_exchange_ttl,
        )
        self.pools = PoolRegistry(settings, self.registry)
        self.metrics = PickerMetrics(self.registry)
        self.registry.register(PoolCollector(self.pools.labelled_states))
        ProcessCollector(registry=self.registry)
        processor = ExternalProcessor(
            self.pools,
            self.metrics,
            ExchangeSettings(options.role, options.max_body_bytes, options.conformance_steering),
        )
        self.server = PickerServer(processor, Listen(options.host, options.grpc_port, options.health_port, self._tls()))
        self._tasks: list[asyncio.Task] = []
        self._metrics_http: WSGIServer | None = None
        self._stop_watch = asyncio.Event()

    def _tls(self) -> tuple[bytes, bytes] | None:
        options = self.options
        if not options.secure_serving:
            return None
        if options.cert_path:
            return load_key_pair(options.cert_path)
        return self_signed_key_pair([options.host])

    def ports(self) -> dict[str, int]:
        """The ports actually bound (useful when started with port 0)."""
        metrics = self._metrics_http.server_port if self._metrics_http is not None else 0
        ports = {"grpc": self.server.grpc_port, "health": self.server.health_port, "metrics": metrics}
        if self.load_exchange is not None:
            ports["load_exchange"] = self.load_exchange.port
        return ports

    async def publish(self, view: PickerView) -> None:
        """Apply a new view of the cluster and report readiness."""
        await self.pools.apply(view)
        await self.server.set_ready(True)

    async def start(self) -> None:
        """Start discovery, the gRPC servers and the metrics endpoint. With an objects file, the first view is
        loaded before the servers start (an unusable file raises)."""
        options = self.options
        pools = options.pools if options.endpoint_picker else []
        metrics_auth = None
        if self.load_exchange is not None:
            await self.load_exchange.start()
        if options.objects_file:
            source = ObjectsFile(options.objects_file, pools)
            first = source.first_view()
            await self.server.start()
            await self.publish(first)
            self._tasks.append(
                asyncio.create_task(source.watch(self.publish, self._stop_watch), name="objects file watch")
            )
        elif not options.endpoint_picker and options.kube_client is None and not _has_kubernetes(options.kubeconfig):
            # a model router alone needs Kubernetes only for the adapter -> base model ConfigMaps: route by model
            # name without them rather than refuse to start (e.g. a sidecar without API credentials)
            log.warning("model router without Kubernetes access: no LoRA adapter -> base model mapping")
            await self.server.start()
            await self.publish(PickerView())
        else:
            client = options.kube_client or api_client(options.kubeconfig)
            kube = KubeSource(pools or [], options.model_router, client)
            metrics_auth = TokenReviewAuth(client) if options.metrics_endpoint_auth else None
            await self.server.start()
            self._tasks.append(asyncio.create_task(kube.run(self.publish), name="kubernetes watch"))
        if options.metrics_port is not None:
            self._metrics_http = serve_metrics(self.registry, options.host, options.metrics_port, metrics_auth)
        log.info(
            "picker serving",
            extra={
                "role": options.role,
                **self.ports(),
                "host": options.host,
                "pools": sorted(self.pools.pools),
                "tls": options.secure_serving,
                "metrics_auth": metrics_auth is not None,
            },
        )

    async def stop(self) -> None:
        """Stop serving: readiness off, streams in flight get a short grace, discovery and scraping stop."""
        self._stop_watch.set()
        await self.server.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.load_exchange is not None:
            await self.load_exchange.stop()
        await self.pools.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None


async def serve(options: PickerOptions) -> None:
    """Run a picker until SIGTERM or SIGINT."""
    picker = Picker(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await picker.start()
        await stop.wait()
        log.info("picker stopping")
    finally:
        await picker.stop()


def run(options: PickerOptions) -> None:
    """Run a picker until SIGTERM or SIGINT, on uvloop's event loop: most of a request's cost is grpc.aio handing
    each ext_proc message to the event loop, and uvloop took 15% off the picker's CPU per request through Envoy."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(options))


def _has_kubernetes(kubeconfig: str | None) -> bool:
    """Whether a Kubernetes API client can be configured here (in-cluster credentials or a kubeconfig)."""
    try:
        api_client(kubeconfig)
        return True
    except ValueError:
        return False
