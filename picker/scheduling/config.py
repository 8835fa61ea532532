"""Profiles from the upstream `EndpointPickerConfig` YAML, and poolgate's built-in profiles.

    apiVersion: llm-d.ai/v1alpha1          # or llm-d.ai/v1, inference.networking.x-k8s.io/v1alpha1
    kind: EndpointPickerConfig
    plugins:
    - type: queue-scorer                   # name defaults to the type
    - type: prefix-cache-scorer
      name: prefix
      parameters: {maxPrefixBlocksToMatch: 256}
    - type: max-score-picker
    schedulingProfiles:
    - name: default
      plugins:
      - pluginRef: queue-scorer
        weight: 2                          # scorers only; default 1
      - pluginRef: prefix
        weight: 3
      - pluginRef: max-score-picker        # at most one picker; max-score-picker when none is listed
    saturationDetector:                    # optional; or list a `utilization-detector` plugin
      queueDepthThreshold: 5
      kvCacheUtilThreshold: 0.8
      metricsStalenessThreshold: 200ms

Without `schedulingProfiles`, one profile `default` holds every declared filter, scorer (weight 1) and picker.
The prefix-aware plugins of one config share one prefix index, configured by an `approx-prefix-cache-producer`
plugin or by the prefix parameters of `prefix-cache-scorer`. `single-profile-handler` is accepted (poolgate runs
one profile per scheduler); the sections `featureGates`, `dataLayer`, `flowControl`, `parser` and `requestHandler`
are accepted and not used. Unknown plugin types, unknown parameters and dangling references are errors naming the
plugin or profile.

Built-in configs (`builtin_config(name)`): `llmd-default` reproduces the reference default (queue 2, KV 2,
prefix 3, max-score picker); `poolgate-default` filters stale endpoints and picks the lowest predicted TTFT plus
the capacity a cache miss costs the pool (`predicted-ttft-scorer`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from picker.scheduling.filters import HeaderBasedTestingFilter, StaleMetricsFilter, SubsetFilter
from picker.scheduling.framework import Filter, Picker, Plugin, Profile, Scorer
from picker.scheduling.pickers import MaxScorePicker, RandomPicker, RoundRobinPicker, WeightedRandomPicker
from picker.scheduling.prefix import (
    DEFAULT_BLOCK_SIZE_TOKENS,
    DEFAULT_LRU_CAPACITY,
    DEFAULT_MAX_PREFIX_BLOCKS,
    PrefixIndex,
)
from picker.scheduling.saturation import UtilizationDetector
from picker.scheduling.scorers import (
    SESSION_TOKEN_HEADER,
    ActiveRequestScorer,
    KvCacheUtilizationScorer,
    LoraAffinityScorer,
    NoHitLruScorer,
    PrefixCacheScorer,
    QueueScorer,
    RunningRequestsScorer,
    SessionAffinityScorer,
)
from picker.scheduling.ttft import PredictedTtftScorer

API_VERSIONS = ("llm-d.ai/v1alpha1", "llm-d.ai/v1", "inference.networking.x-k8s.io/v1alpha1")


class ConfigError(ValueError):
    """An EndpointPickerConfig poolgate cannot build; the message names the plugin or profile at fault."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a Go duration string such as "200ms", "1.5s" or "1m30s"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value or _DURATION_PART.sub("", value):
        raise ValueError(f"{value!r} is not a duration (e.g. 200ms, 1.5s, 1m30s)")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(value))


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Seconds = Annotated[float, Field(ge=0)]


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParameters(_Parameters):
    """Plugins without parameters."""


class PickerParameters(_Parameters):
    maxNumOfEndpoints: int | None = Field(default=None, description="accepted for compatibility; ignored")


class PrefixIndexParameters(_Parameters):
    blockSizeTokens: int = Field(default=DEFAULT_BLOCK_SIZE_TOKENS, gt=0)
    hashBlockSize: int | None = Field(default=None, gt=0, description="fixed block size in bytes")
    maxPrefixBlocksToMatch: int = Field(default=DEFAULT_MAX_PREFIX_BLOCKS, gt=0)
    lruCapacityPerServer: int = Field(default=DEFAULT_LRU_CAPACITY, gt=0)
    autoTune: bool = True


class StaleMetricsParameters(_Parameters):
    maxAge: Duration = 1.0


class ActiveRequestParameters(_Parameters):
    idleThreshold: int = Field(default=0, ge=0)
    maxBusyScore: float = Field(default=1.0, ge=0, le=1)


class SessionAffinityParameters(_Parameters):
    headerName: str = Field(default=SESSION_TOKEN_HEADER, min_length=1)


class NoHitLruParameters(_Parameters):
    lruSize: int = Field(default=1024, gt=0)


class UtilizationDetectorParameters(_Parameters):
    queueDepthThreshold: float = Field(default=5, gt=0)
    kvCacheUtilThreshold: float = Field(default=0.8, gt=0)
    metricsStalenessThreshold: Duration = 0.2
    headroom: float = Field(default=0.0, ge=0)


class PredictedTtftParameters(_Parameters):
    baseSeconds: Seconds = 0.02
    runningSecondsPerRequest: Seconds = 0.001
    prefillSecondsPerToken: Seconds = 0.0002
    slotSeconds: Seconds = 10.0
    slotSecondsSmoothing: float = Field(default=0.02, ge=0, le=1)
    kvKnee: float = Field(default=0.8, ge=0, lt=1)
    kvPressureSeconds: Seconds = 1.0
    kvFullSeconds: Seconds = 2.0
    loraLoadSeconds: Seconds = 0.2
    loraUnavailableSeconds: Seconds = 5.0
    prefillPenalty: float = Field(default=0.0, ge=0)
    learnOnline: bool = False
    forgetting: float = Field(default=0.999, gt=0, le=1)


class PrefixScorerParameters(_Parameters):
    """`prefix-cache-scorer` may carry the prefix index parameters itself (older upstream configs)."""

    blockSizeTokens: int | None = Field(default=None, gt=0)
    hashBlockSize: int | None = Field(default=None, gt=0)
    maxPrefixBlocksToMatch: int | None = Field(default=None, gt=0)
    lruCapacityPerServer: int | None = Field(default=None, gt=0)
    autoTune: bool | None = None

    def index_parameters(self) -> PrefixIndexParameters | None:
        given = self.model_dump(exclude_none=True)
        return PrefixIndexParameters(**given) if given else None


class PluginSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1)
    name: str | None = None
    parameters: dict[str, Any] | None = None


class PluginReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pluginRef: str = Field(min_length=1)
    weight: float | None = Field(default=None, ge=0)


class SchedulingProfileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    plugins: list[PluginReference] = Field(min_length=1)


class SaturationDetectorSpec(UtilizationDetectorParameters):
    pass


class EndpointPickerConfig(BaseModel):
    """The upstream EndpointPickerConfig document (the parts poolgate reads)."""

    model_config = ConfigDict(extra="forbid")
    apiVersion: Literal[API_VERSIONS]  # type: ignore[valid-type]
    kind: Literal["EndpointPickerConfig"]
    plugins: list[PluginSpec] = Field(default_factory=list)
    schedulingProfiles: list[SchedulingProfileSpec] = Field(default_factory=list)
    saturationDetector: SaturationDetectorSpec | None = None
    featureGates: list[str] = Field(default_factory=list)
    dataLayer: Any = None
    flowControl: Any = None
    parser: Any = None
    requestHandler: Any = None


class _ProfileHandler:
    """A declared profile handler; poolgate runs one profile per scheduler, so it has no effect."""


class _BuildContext:
    """What plugin factories share while one config is built: the RNG and the config's prefix index."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._index: PrefixIndex | None = None
        self._index_parameters: PrefixIndexParameters | None = None

    def prefix_index(self, parameters: PrefixIndexParameters | None, owner: str) -> PrefixIndex:
        if parameters is not None and self._index is not None and parameters != self._index_parameters:
            raise ConfigError(
                f"plugin {owner!r}: its prefix index parameters differ from those already set; "
                "one config has one prefix index (declare an approx-prefix-cache-producer)"
            )
        if self._index is None:
            self._index_parameters = parameters or PrefixIndexParameters()
            p = self._index_parameters
            self._index = PrefixIndex(
                owner if parameters is not None else "",
                block_size_tokens=p.blockSizeTokens,
                hash_block_bytes=p.hashBlockSize,
                max_prefix_blocks=p.maxPrefixBlocksToMatch,
                lru_capacity=p.lruCapacityPerServer,
                auto_tune=p.autoTune,
            )
        return self._index


_Factory = Callable[[str, Any, _BuildContext], Any]

# type -> (parameters model, factory(name, parameters, context))
PLUGIN_TYPES: dict[str, tuple[type[_Parameters], _Factory]] = {
    "queue-scorer": (NoParameters, lambda name, p, ctx: QueueScorer(name)),
    "kv-cache-utilization-scorer": (NoParameters, lambda name, p, ctx: KvCacheUtilizationScorer(name)),
    "kv-cache-scorer": (NoParameters, lambda name, p, ctx: KvCacheUtilizationScorer(name)),  # older name
    "running-requests-size-scorer": (NoParameters, lambda name, p, ctx: RunningRequestsScorer(name)),
    "active-request-scorer": (
        ActiveRequestParameters,
        lambda name, p, ctx: ActiveRequestScorer(name, idle_threshold=p.idleThreshold, max_busy_score=p.maxBusyScore),
    ),
    "prefix-cache-scorer": (
        PrefixScorerParameters,
        lambda name, p, ctx: PrefixCacheScorer(name, index=ctx.prefix_index(p.index_parameters(), name)),
    ),
    "approx-prefix-cache-producer": (PrefixIndexParameters, lambda name, p, ctx: ctx.prefix_index(p, name)),
    "lora-affinity-scorer": (NoParameters, lambda name, p, ctx: LoraAffinityScorer(name)),
    "session-affinity-scorer": (
        SessionAffinityParameters,
        lambda name, p, ctx: SessionAffinityScorer(name, header_name=p.headerName),
    ),
    "no-hit-lru-scorer": (
        NoHitLruParameters,
        lambda name, p, ctx: NoHitLruScorer(name, index=ctx.prefix_index(None, name), lru_size=p.lruSize),
    ),
    "predicted-ttft-scorer": (
        PredictedTtftParameters,
        lambda name, p, ctx: PredictedTtftScorer(
            name,
            index=ctx.prefix_index(None, name),
            base_seconds=p.baseSeconds,
            running_seconds_per_request=p.runningSecondsPerRequest,
            prefill_seconds_per_token=p.prefillSecondsPerToken,
            slot_seconds=p.slotSeconds,
            slot_seconds_smoothing=p.slotSecondsSmoothing,
            kv_knee=p.kvKnee,
            kv_pressure_seconds=p.kvPressureSeconds,
            kv_full_seconds=p.kvFullSeconds,
            lora_load_seconds=p.loraLoadSeconds,
            lora_unavailable_seconds=p.loraUnavailableSeconds,
            prefill_penalty=p.prefillPenalty,
            learn_online=p.learnOnline,
            forgetting=p.forgetting,
        ),
    ),
    "subset-filter": (NoParameters, lambda name, p, ctx: SubsetFilter(name)),
    "header-based-testing-filter": (NoParameters, lambda name, p, ctx: HeaderBasedTestingFilter(name)),
    "stale-metrics-filter": (StaleMetricsParameters, lambda name, p, ctx: StaleMetricsFilter(name, max_age=p.maxAge)),
    "utilization-detector": (UtilizationDetectorParameters, lambda name, p, ctx: _detector(name, p)),
    "max-score-picker": (PickerParameters, lambda name, p, ctx: MaxScorePicker(name, rng=ctx.rng)),
    "random-picker": (PickerParameters, lambda name, p, ctx: RandomPicker(name, rng=ctx.rng)),
    "weighted-random-picker": (PickerParameters, lambda name, p, ctx: WeightedRandomPicker(name, rng=ctx.rng)),
    "round-robin-picker": (PickerParameters, lambda name, p, ctx: RoundRobinPicker(name)),
    "single-profile-handler": (NoParameters, lambda name, p, ctx: _ProfileHandler()),
}


def _detector(name: str, p: UtilizationDetectorParameters) -> UtilizationDetector:
    return UtilizationDetector(
        name,
        queue_depth_threshold=p.queueDepthThreshold,
        kv_cache_util_threshold=p.kvCacheUtilThreshold,
        metrics_staleness_threshold=p.metricsStalenessThreshold,
        headroom=p.headroom,
    )


@dataclass(slots=True)
class PickerConfig:
    """A built config: its profiles by name and the pool saturation detector."""

    profiles: dict[str, Profile]
    saturation: UtilizationDetector

    def profile(self, name: str | None = None) -> Profile:
        """Return the named profile, or the first one."""
        if name is None:
            return next(iter(self.profiles.values()))
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(f"no scheduling profile {name!r}; the config has {sorted(self.profiles)}") from None


def load_config(source: str | Mapping[str, Any], rng: random.Random | None = None) -> PickerConfig:
    """Build the profiles of an EndpointPickerConfig given as YAML text or as a parsed mapping."""
    if isinstance(source, str):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as error:
            raise ConfigError(f"EndpointPickerConfig is not valid YAML: {error}") from error
    if not isinstance(source, Mapping):
        raise ConfigError("EndpointPickerConfig must be a YAML mapping")
    try:
        config = EndpointPickerConfig.model_validate(source)
    except ValidationError as error:
        raise ConfigError(f"invalid EndpointPickerConfig: {error}") from error
    return _build(config, _BuildContext(rng if rng is not None else random.Random()))


def _build(config: EndpointPickerConfig, ctx: _BuildContext) -> PickerConfig:
    specs: dict[str, PluginSpec] = {}
    for spec in config.plugins:
        name = spec.name or spec.type
        if name in specs:
            raise ConfigError(f"plugin name {name!r} is declared twice")
        if spec.type not in PLUGIN_TYPES:
            raise ConfigError(
                f"plugin {name!r} has unknown type {spec.type!r}; poolgate supports: {', '.join(sorted(PLUGIN_TYPES))}"
            )
        specs[name] = spec
    # the prefix index producer first, so that the scorers reading it share its parameters
    ordered = sorted(specs.items(), key=lambda item: item[1].type != "approx-prefix-cache-producer")
    plugins: dict[str, Any] = {name: _instantiate(name, spec, ctx) for name, spec in ordered}
    plugins = {name: plugins[name] for name in specs}  # back to declaration order

    detectors = [p for p in plugins.values() if isinstance(p, UtilizationDetector)]
    if config.saturationDetector is not None:
        saturation = _detector("saturation-detector", config.saturationDetector)
    else:
        saturation = detectors[0] if detectors else UtilizationDetector()

    if not config.schedulingProfiles:
        every = [
            PluginReference(pluginRef=name)
            for name, p in plugins.items()
            if isinstance(p, (Filter, Scorer, Picker)) and not isinstance(p, UtilizationDetector)
        ]
        return PickerConfig({"default": _profile("default", every, plugins, ctx)}, saturation)
    profiles: dict[str, Profile] = {}
    for profile_spec in config.schedulingProfiles:
        if profile_spec.name in profiles:
            raise ConfigError(f"scheduling profile {profile_spec.name!r} is declared twice")
        profiles[profile_spec.name] = _profile(profile_spec.name, profile_spec.plugins, plugins, ctx)
    return PickerConfig(profiles, saturation)


def _instantiate(name: str, spec: PluginSpec, ctx: _BuildContext) -> Any:
    parameters_model, factory = PLUGIN_TYPES[spec.type]
    try:
        parameters = parameters_model.model_validate(spec.parameters or {})
    except ValidationError as error:
        raise ConfigError(f"plugin {name!r} ({spec.type}) has invalid parameters: {error}") from error
    try:
        return factory(name, parameters, ctx)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"plugin {name!r} ({spec.type}): {error}") from error


def _profile(name: str, references: list[PluginReference], plugins: Mapping[str, Any], ctx: _BuildContext) -> Profile:
    filters: list[Filter] = []
    scorers: list[tuple[Scorer, float]] = []
    pickers: list[Picker] = []
    extra: list[Plugin] = []
    for reference in references:
        plugin = plugins.get(reference.pluginRef)
        if plugin is None:
            raise ConfigError(f"scheduling profile {name!r} refers to undeclared plugin {reference.pluginRef!r}")
        if isinstance(plugin, Scorer):
            scorers.append((plugin, 1.0 if reference.weight is None else reference.weight))
        elif isinstance(plugin, Filter):
            filters.append(plugin)
        elif isinstance(plugin, Picker):
            pickers.append(plugin)
        elif isinstance(plugin, Plugin):
            extra.append(plugin)
    if len(pickers) > 1:
        raise ConfigError(f"scheduling profile {name!r} lists {len(pickers)} pickers; at most one is allowed")
    picker = pickers[0] if pickers else MaxScorePicker(rng=ctx.rng)
    return Profile(name, filters, scorers, picker, extra)


BUILTIN_CONFIGS: dict[str, str] = {
    "llmd-default": """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: llmd-default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
  - pluginRef: max-score-picker
""",
    "poolgate-default": """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: stale-metrics-filter
- type: predicted-ttft-scorer
  parameters:
    learnOnline: true
- type: max-score-picker
schedulingProfiles:
- name: poolgate-default
  plugins:
  - pluginRef: stale-metrics-filter
  - pluginRef: predicted-ttft-scorer
  - pluginRef: max-score-picker
""",
}


def builtin_config(name: str, rng: random.Random | None = None) -> PickerConfig:
    """Build a fresh instance (own prefix index, own state) of a built-in config: `llmd-default` or
    `poolgate-default`."""
    try:
        text = BUILTIN_CONFIGS[name]
    except KeyError:
        raise ConfigError(f"no built-in profile {name!r}; choose one of {sorted(BUILTIN_CONFIGS)}") from None
    return load_config(text, rng)
