"""An in-process endpoint picker for tests: the real gRPC servers on loopback, pools given as views.

    async with PickerHarness(view, profile="llmd-default") as picker:
        picker.feed("default/pool", {"127.0.0.20:8000": (0, 0.1)})   # waiting, KV use
        stream = picker.stream("default/pool")
        ...

Pool metrics are fed through `PoolState.apply_samples` (no scraping) unless `scrape_interval` is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from picker.discovery.view import PickerView, PoolView
from picker.pool.state import EndpointSpec
from picker.server.exchange import ExchangeSettings
from picker.server.metrics import PickerMetrics, PoolCollector
from picker.server.pools import PoolRegistry, PoolSettings, ProfileSource
from picker.server.service import ExternalProcessor, Listen, PickerServer
from tests.support.extproc import ExtProcStream


def pool_view(key: str, endpoints: list[str], **fields) -> PoolView:
    """A PoolView of existing pool `key` with endpoints given as `ip:port` strings."""
    specs = tuple(
        EndpointSpec(e.rpartition(":")[0], int(e.rpartition(":")[2]), f"pod-{i}") for i, e in enumerate(endpoints)
    )
    return PoolView(key, True, specs, **fields)


def vllm_samples(waiting: int, kv_usage: float, running: int = 0) -> list[Sample]:
    """The core vLLM gauges of one scrape."""
    return [
        Sample("vllm:num_requests_waiting", {}, waiting, None, None),
        Sample("vllm:num_requests_running", {}, running, None, None),
        Sample("vllm:kv_cache_usage_perc", {}, kv_usage, None, None),
    ]


class PickerHarness:
    """A picker's gRPC servers on 127.0.0.1 (free ports) serving the pools of a view; see the module docstring.
    `profile` names a built-in profile, or with `config_text` (an EndpointPickerConfig) one of its profiles (None:
    its first)."""

    def __init__(
        self,
        view: PickerView,
        *,
        profile: str | None = "llmd-default",
        config_text: str | None = None,
        fallbacks: int = 2,
        role: str = "endpoint-picker",
        max_body_bytes: int = 10 * 1024 * 1024,
        conformance_steering: bool = False,
        tls: tuple[bytes, bytes] | None = None,
        scrape_interval: float | None = None,
        ready: bool = True,
    ) -> None:
        self.view = view
        self.registry = CollectorRegistry()
        self.pools = PoolRegistry(
            PoolSettings(ProfileSource(config_text, profile), fallbacks=fallbacks, scrape_interval=scrape_interval),
            self.registry,
        )
        self.metrics = PickerMetrics(self.registry)
        self.registry.register(PoolCollector(self.pools.labelled_states))
        self.settings = ExchangeSettings(role, max_body_bytes, conformance_steering)
        self.server = PickerServer(
            ExternalProcessor(self.pools, self.metrics, self.settings), Listen("127.0.0.1", 0, 0, tls)
        )
        self.tls = tls
        self.ready = ready
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> PickerHarness:
        await self.pools.apply(self.view)
        await self.server.start()
        if self.ready:
            await self.server.set_ready(True)
        if self.tls is None:
            self.channel = grpc.aio.insecure_channel(self.target)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.tls[1])
            self.channel = grpc.aio.secure_channel(
                self.target, credentials, options=(("grpc.ssl_target_name_override", "localhost"),)
            )
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.channel.close()
        await self.server.stop(0)
        await self.pools.close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    def stream(self, pool: str | None = None, callout: str | None = None) -> ExtProcStream:
        """A new ext_proc stream (one HTTP request) naming `pool` in its gRPC metadata."""
        return ExtProcStream(self.channel, pool, callout)

    def state(self, pool: str):
        return self.pools.pools[pool].state

    def feed(self, pool: str, metrics: Mapping[str, tuple[int, float]]) -> None:
        """Record a fresh scrape for endpoints: {ip:port: (waiting, kv_usage)}."""
        state = self.state(pool)
        now = state.clock()
        for key, (waiting, kv) in metrics.items():
            state.apply_samples(key, vllm_samples(waiting, kv), now)

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """A metric sample's value (0 when absent)."""
        return self.registry.get_sample_value(name, dict(labels or {})) or 0.0
