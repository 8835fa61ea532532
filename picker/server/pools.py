"""The pools one picker process serves: per pool its state, scraper, scheduler, objectives, rewrites and models.

`PoolRegistry.apply(view)` takes what discovery found (a `PickerView`) and brings every pool up to date: endpoints
join and leave the `PoolState` (the scraper follows), priorities, rewrites and the model list are replaced, and a
pool whose scheduling profile changed gets a fresh state and scheduler (requests in flight finish on the old ones).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from picker.discovery.view import PickerView, PoolView
from picker.pool.objectives import RewriteTable
from picker.pool.scraper import MetricsScraper
from picker.pool.served import ServedModelsPoller
from picker.pool.state import PoolState
from picker.scheduling.config import BUILTIN_CONFIGS, PickerConfig, builtin_config, load_config
from picker.scheduling.loadbook import LoadBook, LoadEvent
from picker.scheduling.parsers import RequestParsers, default_parsers
from picker.scheduling.scheduler import Scheduler
from picker.server.errors import RequestError

log = logging.getLogger("poolgate.picker")


class ProfileSource:
    """Builds a fresh scheduling config for a pool: from the EndpointPickerConfig file, or a built-in profile.

    With a config file, `default` names one of its profiles (None: its first); a pool's annotation may name a profile
    of the file or a built-in one. Without a file, `default` and annotations name built-in profiles.
    """

    def __init__(self, config_text: str | None = None, default: str | None = None) -> None:
        self.config_text = config_text
        if config_text is not None:
            self.default = load_config(config_text).profile(default).name  # validates the file and the name
        else:
            self.default = default or "poolgate-default"
            builtin_config(self.default)  # validates the name

    def build(self, requested: str | None = None) -> tuple[PickerConfig, str]:
        """A fresh config (own plugin state) and the name of the profile to run."""
        if self.config_text is not None:
            config = load_config(self.config_text)
            if requested in config.profiles:
                return config, requested
            if requested in BUILTIN_CONFIGS:
                return builtin_config(requested), requested
            if requested:
                log.warning(
                    "unknown scheduling profile; using the default",
                    extra={"profile": requested, "default": self.default},
                )
            return config, self.default
        name = requested if requested in BUILTIN_CONFIGS else self.default
        if requested and requested != name:
            log.warning(
                "unknown scheduling profile; using the default", extra={"profile": requested, "default": self.default}
            )
        return builtin_config(name), name


@dataclass(frozen=True)
class PoolSettings:
    """How every pool runs: scheduling profiles, fallbacks, metrics scraping and model-list polling (with it)."""

    profiles: ProfileSource
    fallbacks: int | None = None  # None: as the profile's picker says (maxNumOfEndpoints)
    scrape_interval: float | None = 0.05  # None: no scraping or model-list polls (fed through PoolState directly)
    scrape_timeout: float = 1.0
    clock: Callable[[], float] = time.monotonic
    announce: Callable[[str, LoadEvent], None] | None = None  # the load exchange: (pool key, event) to the peers
    peer_ttl: float = 60.0  # seconds after which a peer's request not announced as ended is forgotten


class PoolRuntime:
    """One served pool (see the module docstring). `scheduler` and `state` belong together; keep the pair a request
    was scheduled with for its whole life."""

    def __init__(self, key: str, settings: PoolSettings, registry: CollectorRegistry) -> None:
        self.key = key
        self.name = key.partition("/")[2]
        self._settings = settings
        self._registry = registry
        self.view = PoolView(key)
        self.profile = ""
        self.state = PoolState(settings.clock)
        self.scheduler: Scheduler | None = None
        self.book: LoadBook | None = None  # the peer replicas' requests (with a load exchange)
        self.parsers: RequestParsers = default_parsers()  # which requests are read as OpenAI bodies, by path
        self.scraper: MetricsScraper | None = None
        self.models_poller: ServedModelsPoller | None = None
        self.priorities: dict[str, int | None] = {}
        self.rewrites = RewriteTable(())
        self.rewrite_names: dict[int, str] = {}  # id(rule) -> name of the InferenceModelRewrite holding it
        self.accepted_models: frozenset[str] | None = None
        self.rng = random.Random()

    @property
    def exists(self) -> bool:
        """Whether discovery has seen the InferencePool object."""
        return self.view.exists

    async def apply(self, view: PoolView) -> None:
        """Bring the pool up to date with what discovery found."""
        if self.scheduler is None or view.profile != self.view.profile:
            await self._rebuild(view.profile)
        self.view = view
        self.state.set_endpoints(view.endpoints)
        self.priorities = dict(view.priorities)
        self.rewrites = RewriteTable(view.rewrites)
        self.rewrite_names = {id(rule): rewrite.name for rewrite in view.rewrites for rule in rewrite.rules}
        self.accepted_models = _accepted_models(view)

    async def _rebuild(self, requested_profile: str | None) -> None:
        settings = self._settings
        config, profile = settings.profiles.build(requested_profile)
        old_scraper, old_scheduler = self.scraper, self.scheduler
        self.state = PoolState(settings.clock)
        self.scheduler = Scheduler(
            self.state, config.profile(profile), saturation=config.saturation, fallbacks=settings.fallbacks
        )
        self.parsers = config.parsers
        self.profile = profile
        announce = settings.announce
        if announce is not None:
            key = self.key
            self.scheduler.outbox = lambda event: announce(key, event)
            self.book = LoadBook(self.scheduler, settings.peer_ttl)
        old_poller, self.scraper, self.models_poller = self.models_poller, None, None
        for old in (old_scraper, old_poller):
            if old is not None:
                await old.stop()
        if old_scheduler is not None:
            old_scheduler.close()
        if settings.scrape_interval is not None:
            self.scraper = MetricsScraper(
                self.state, interval=settings.scrape_interval, timeout=settings.scrape_timeout, registry=self._registry
            )
            await self.scraper.start()
            self.models_poller = ServedModelsPoller(
                self.state,
                interval=_model_list_interval(config, settings.scrape_interval),
                path=config.model_list_path,
            )
            await self.models_poller.start()
        log.info("pool scheduling profile", extra={"pool": self.key, "profile": profile})

    async def close(self) -> None:
        """Stop scraping and polling, and retire the scheduler."""
        for poller in (self.scraper, self.models_poller):
            if poller is not None:
                await poller.stop()
        if self.scheduler is not None:
            self.scheduler.close()


def _model_list_interval(config: PickerConfig, scrape_interval: float) -> float:
    """Seconds between two model-list polls of an endpoint: the config's interval rounded to a multiple of the
    metrics scrape interval (at least one), or the scrape interval when the config asks for every scrape."""
    if config.model_list_interval is None:
        return scrape_interval
    return max(1, round(config.model_list_interval / scrape_interval)) * scrape_interval


def _accepted_models(view: PoolView) -> frozenset[str] | None:
    """The models a pool with a fixed model list accepts: the list plus every model its rewrites name; None (any
    model) without a list or when a rewrite rule catches every model."""
    if view.models is None:
        return None
    names = set(view.models)
    for rewrite in view.rewrites:
        for rule in rewrite.rules:
            if not rule.models:
                return None
            names.update(rule.models)
            names.update(target.model for target in rule.targets)
    return frozenset(names)


class PoolRegistry:
    """The pools this process serves, by `namespace/name`, and the LoRA adapter -> base model map."""

    def __init__(self, settings: PoolSettings, registry: CollectorRegistry) -> None:
        self._settings = settings
        self._registry = registry
        self.pools: dict[str, PoolRuntime] = {}
        self.adapter_bases: dict[str, str] = {}
        self.synced = False

    async def apply(self, view: PickerView) -> None:
        """Take a new view: add, update and remove pools."""
        for key in [key for key in self.pools if key not in view.pools]:
            await self.pools.pop(key).close()
            log.info("pool no longer served", extra={"pool": key})
        for key, pool_view in view.pools.items():
            runtime = self.pools.get(key)
            if runtime is None:
                runtime = self.pools[key] = PoolRuntime(key, self._settings, self._registry)
            before = len(runtime.state)
            await runtime.apply(pool_view)
            if not pool_view.exists:
                log.warning("InferencePool not found", extra={"pool": key})
            elif len(runtime.state) != before:
                log.info("pool endpoints", extra={"pool": key, "endpoints": len(runtime.state)})
        self.adapter_bases = dict(view.adapter_bases)
        self.synced = True

    def lookup(self, key: str | None) -> PoolRuntime:
        """The pool a request names (gRPC metadata `x-poolgate-pool`), or the only pool served when it names none;
        raises RequestError(503) otherwise."""
        if key is None:
            if len(self.pools) == 1:
                return next(iter(self.pools.values()))
            raise RequestError(
                503,
                f"the picker serves {len(self.pools)} pools and the proxy did not say which one "
                "(gRPC metadata x-poolgate-pool)",
            )
        runtime = self.pools.get(key)
        if runtime is None:
            raise RequestError(503, f"the picker does not serve InferencePool {key}")
        return runtime

    def load_books(self) -> dict[str, LoadBook]:
        """The load book of every pool (with a load exchange), by `namespace/name`."""
        return {key: runtime.book for key, runtime in self.pools.items() if runtime.book is not None}

    def labelled_states(self) -> Iterator[tuple[str, PoolState]]:
        """(metric label, state) of every pool: the pool name, or namespace/name when two pools share a name."""
        names = [runtime.name for runtime in self.pools.values()]
        for runtime in list(self.pools.values()):
            label = runtime.name if names.count(runtime.name) == 1 else runtime.key
            yield label, runtime.state

    async def close(self) -> None:
        """Stop every pool's scraping."""
        for runtime in self.pools.values():
            await runtime.close()
