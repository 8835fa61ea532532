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
    saturationDetector:                    # optional: {pluginRef: <a declared utilization-detector>}, or its
      pluginRef: utilization-detector      # parameters inline; default: the first declared detector, else defaults
    featureGates: [enableLegacyMetrics]    # dataLayer, enableLegacyMetrics (`name=false` too); flowControl refused
    dataLayer:                             # sources and their extractors must be declared plugins of those kinds
      sources:
      - pluginRef: metrics-data-source
        extractors: [{pluginRef: core-metrics-extractor}]
    requestHandler:                        # request parsers, first match by path suffix (picker.scheduling.parsers);
      parsers:                             # default: openai-parser, then passthrough-parser (the fallback);
      - pluginRef: openai-parser           # the deprecated `parser: {pluginRef: ...}` is read when this is absent

Without `schedulingProfiles`, one profile `default` holds every declared filter, scorer (weight 1) and picker. The
prefix-aware plugins of one config share one prefix index, configured by an `approx-prefix-cache-producer` plugin or
by the prefix parameters of `prefix-cache-scorer`, tokenized by the config's `token-producer`. With a profile
handler (`disagg-profile-handler`) the scheduler runs the handler's primary profile (`decode`) and the handler runs
the others; without one, the first profile (or the one named). Admitters (`probabilistic-admitter`) apply to every
profile. `flowControl.saturationDetector` (which wins over the deprecated top-level section) is read and the other
`flowControl` settings are ignored with a warning, as upstream does without its `flowControl` gate; that gate and a
`dataLayer.discovery` are refused (not implemented). Unknown plugin types, unknown parameters and dangling
references are errors naming the plugin, profile or section.

Built-in configs (`builtin_config(name)`): `llmd-default` is the reference picker's (llm-d router v0.10) default:
queue 2, KV 2, prefix 3 (approximate prefix index over `estimate` tokens), max-score picker (one endpoint, as
upstream); `poolgate-default` filters stale endpoints, picks three endpoints (the primary and two fallbacks) by the
lowest predicted TTFT plus the capacity a cache miss costs the pool (`predicted-ttft-scorer`, which copies a short
shared prompt to a second endpoint while its one is busy), with prefix matches from
`precise-prefix-cache-producer`: the engines' KV events for
each endpoint that publishes them (on port 5557, vLLM's default) and whose index is trusted, the approximate
index for the others, so a pool without events is routed as with the approximate index alone.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from picker.pool.served import DEFAULT_INTERVAL_S as DEFAULT_MODEL_LIST_INTERVAL_S
from picker.scheduling.datalayer import DataLayerSource, ModelsDataSource
from picker.scheduling.framework import Admitter, Filter, Picker, Plugin, Profile, ProfileHandler, Scorer
from picker.scheduling.parsers import ParserPlugin, RequestParsers, default_parsers
from picker.scheduling.registry import BuildContext, ConfigError, plugin_class
from picker.scheduling.saturation import SaturationDetector
from poolgate.api.contract import MODELS_PATH

log = logging.getLogger("poolgate.picker")

API_VERSIONS = ("llm-d.ai/v1alpha1", "llm-d.ai/v1", "inference.networking.x-k8s.io/v1alpha1")
DEFAULT_PICKER = "max-score-picker"  # a profile without a picker ranks with this one
SATURATION_DETECTOR = "utilization-detector"  # what the `saturationDetector` section configures, and the default
FEATURE_GATES = frozenset({"dataLayer", "enableLegacyMetrics", "flowControl"})  # upstream's gates
_BOOLEANS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}  # as Go's strconv.ParseBool
# may be listed as extractors
EXTRACTORS = frozenset({"core-metrics-extractor", "models-data-extractor", "precise-prefix-cache-producer"})


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginRefSection(_Section):
    pluginRef: str = Field(min_length=1)


class DataLayerSourceSection(_Section):
    pluginRef: str = Field(min_length=1)
    extractors: list[PluginRefSection] = Field(default_factory=list)


class DataLayerSection(_Section):
    injectDefaults: bool | None = None
    sources: list[DataLayerSourceSection] = Field(default_factory=list)
    discovery: PluginRefSection | None = None


class RequestHandlerSection(_Section):
    parsers: list[PluginRefSection] = Field(default_factory=list)


class EndpointPickerConfig(BaseModel):
    """The upstream EndpointPickerConfig document."""

    model_config = ConfigDict(extra="forbid")
    apiVersion: Literal[API_VERSIONS]  # type: ignore[valid-type]
    kind: Literal["EndpointPickerConfig"]
    plugins: list[PluginSpec] = Field(default_factory=list)
    schedulingProfiles: list[SchedulingProfileSpec] = Field(default_factory=list)
    # {pluginRef: a declared detector} or, poolgate's older form, the parameters of a utilization-detector
    saturationDetector: dict[str, Any] | None = None
    featureGates: list[str] = Field(default_factory=list)
    dataLayer: DataLayerSection | None = None
    flowControl: dict[str, Any] | None = None
    parser: PluginRefSection | None = None
    requestHandler: RequestHandlerSection | None = None


@dataclass(slots=True)
class PickerConfig:
    """A built config: its profiles by name, the pool saturation detector, the profile run by default (the
    profile handler's primary, e.g. `decode`, or the first), the feature gates it enables, its request parsers and
    how endpoints' model lists are polled (path, and interval in seconds: None = every metrics scrape)."""

    profiles: dict[str, Profile]
    saturation: SaturationDetector
    primary: str | None = None
    feature_gates: frozenset[str] = frozenset()
    parsers: RequestParsers = field(default_factory=default_parsers)
    model_list_path: str = MODELS_PATH
    model_list_interval: float | None = DEFAULT_MODEL_LIST_INTERVAL_S

    def profile(self, name: str | None = None) -> Profile:
        """Return the named profile, or the default one."""
        if name is None:
            return self.profiles[self.primary] if self.primary else next(iter(self.profiles.values()))
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
    return _build(config, BuildContext(rng if rng is not None else random.Random()))


def _build(config: EndpointPickerConfig, ctx: BuildContext) -> PickerConfig:
    gates = _feature_gates(config)
    ignored = sorted(set(config.flowControl or {}) - {"saturationDetector"})
    if ignored:  # as upstream without the flowControl gate (which poolgate refuses): only the detector is read
        log.warning(
            "flowControl settings ignored: poolgate has no flow-control layer (only flowControl.saturationDetector "
            "is read, as upstream reads it without the flowControl feature gate)",
            extra={"settings": ignored},
        )
    specs: dict[str, PluginSpec] = {}
    for spec in config.plugins:
        name = spec.name or spec.type
        if name in specs:
            raise ConfigError(f"plugin name {name!r} is declared twice")
        plugin_class(spec.type, name)  # an unknown type is an error before anything is built
        specs[name] = spec
    # producers of shared objects (lower build_order) first, so that the plugins reading them share their parameters
    ordered = sorted(specs.values(), key=lambda spec: plugin_class(spec.type, "").build_order)
    for spec in ordered:
        ctx.plugins[spec.name or spec.type] = _instantiate(spec, ctx)
    plugins = {name: ctx.plugins[name] for name in specs}  # back to declaration order
    _check_sections(config, plugins)
    parsers = _request_parsers(config, plugins)
    saturation = _saturation_detector(config, plugins, ctx)

    if not config.schedulingProfiles:
        every = [
            PluginReference(pluginRef=name)
            for name, p in plugins.items()
            if isinstance(p, (Filter, Scorer, Picker)) and not isinstance(p, SaturationDetector)
        ]
        profiles = {"default": _profile("default", every, plugins, ctx)}
    else:
        profiles = {}
        for profile_spec in config.schedulingProfiles:
            if profile_spec.name in profiles:
                raise ConfigError(f"scheduling profile {profile_spec.name!r} is declared twice")
            profiles[profile_spec.name] = _profile(profile_spec.name, profile_spec.plugins, plugins, ctx)
    admitters = [p for p in plugins.values() if isinstance(p, Admitter)]
    for profile in profiles.values():
        profile.extra.extend(a for a in admitters if a not in profile.extra)
    primary = None
    handlers = [p for p in plugins.values() if isinstance(p, ProfileHandler)]
    if len(handlers) > 1:
        raise ConfigError(f"the config declares {len(handlers)} profile handlers; at most one is allowed")
    if handlers:
        primary = handlers[0].bind(profiles)
        if primary is not None:
            profiles[primary].handler = handlers[0]
    return PickerConfig(profiles, saturation, primary, gates, parsers, *_model_list_poll(plugins))


def _model_list_poll(plugins: Mapping[str, Plugin]) -> tuple[str, float | None]:
    """The path and interval of the model-list poll: the declared `models-data-source`'s, else poolgate's default."""
    sources = [p for p in plugins.values() if isinstance(p, ModelsDataSource)]
    if len(sources) > 1:
        raise ConfigError(f"the config declares {len(sources)} models-data-source plugins; at most one is allowed")
    if sources:
        return sources[0].path, sources[0].interval
    return MODELS_PATH, DEFAULT_MODEL_LIST_INTERVAL_S


def _feature_gates(config: EndpointPickerConfig) -> frozenset[str]:
    """The gates the config turns on (`name`, `name=true`; `name=false` turns it off); an unknown gate, a value that
    is not a boolean, or a gate poolgate cannot honour (`flowControl`) is a ConfigError."""
    enabled: set[str] = set()
    for entry in config.featureGates:
        gate, equals, value = entry.partition("=")
        if gate not in FEATURE_GATES:
            raise ConfigError(f"featureGates: unknown gate {gate!r}; known gates: {', '.join(sorted(FEATURE_GATES))}")
        on = value.strip().lower() if equals else "true"
        if on not in _BOOLEANS:
            raise ConfigError(f"featureGates: {value!r} is not a boolean value for gate {gate!r} (true or false)")
        if _BOOLEANS[on]:
            enabled.add(gate)
        else:
            enabled.discard(gate)
    if "flowControl" in enabled:
        raise ConfigError("featureGates: 'flowControl' is not implemented by poolgate (no flow-control layer yet)")
    return frozenset(enabled)


def _referenced(
    plugins: Mapping[str, Plugin], section: str, name: str, accepts: Callable[[Plugin], bool], kind: str
) -> Plugin:
    """The declared plugin a section refers to; a ConfigError naming the section if it is undeclared or of the wrong
    kind."""
    plugin = plugins.get(name)
    if plugin is None:
        raise ConfigError(f"{section} refers to undeclared plugin {name!r}")
    if not accepts(plugin):
        raise ConfigError(f"{section} refers to plugin {name!r} of type {plugin.type_name!r}, not a {kind}")
    return plugin


def _check_sections(config: EndpointPickerConfig, plugins: Mapping[str, Plugin]) -> None:
    """The `dataLayer` section refers to declared plugins of the right kind."""

    layer = config.dataLayer
    if layer is not None:
        if layer.discovery is not None:
            raise ConfigError(
                "dataLayer.discovery: poolgate discovers endpoints from the InferencePool (or --objects-file); "
                "discovery plugins are not implemented"
            )
        for source in layer.sources:
            _referenced(
                plugins, "dataLayer.sources", source.pluginRef, lambda p: isinstance(p, DataLayerSource), "data source"
            )
            for extractor in source.extractors:
                _referenced(
                    plugins,
                    "dataLayer.sources.extractors",
                    extractor.pluginRef,
                    lambda p: p.type_name in EXTRACTORS,
                    "extractor",
                )


def _request_parsers(config: EndpointPickerConfig, plugins: Mapping[str, Plugin]) -> RequestParsers:
    """The parsers of `requestHandler.parsers`, else of the deprecated top-level `parser`, else the default list;
    each reference must name a declared parser plugin."""

    def parser(section: str, name: str) -> ParserPlugin:
        return cast(ParserPlugin, _referenced(plugins, section, name, lambda p: isinstance(p, ParserPlugin), "parser"))

    deprecated = parser("parser", config.parser.pluginRef) if config.parser is not None else None
    listed = [
        parser("requestHandler.parsers", reference.pluginRef)
        for reference in (config.requestHandler.parsers if config.requestHandler is not None else ())
    ]
    if listed:
        return RequestParsers.chain(listed)
    if deprecated is not None:
        return RequestParsers.chain([deprecated])
    return default_parsers()


def _saturation_detector(
    config: EndpointPickerConfig, plugins: Mapping[str, Plugin], ctx: BuildContext
) -> SaturationDetector:
    """The detector of `flowControl.saturationDetector`, else of the deprecated top-level `saturationDetector`
    ({pluginRef}, or the parameters of a utilization-detector inline), else the first declared detector, else a
    default utilization-detector."""
    section = (config.flowControl or {}).get("saturationDetector") or config.saturationDetector
    if section is not None and not isinstance(section, dict):
        raise ConfigError("saturationDetector must be a mapping: {pluginRef: <a declared utilization-detector>}")
    if section is not None and set(section) == {"pluginRef"}:
        detector = plugins.get(section["pluginRef"])
        if detector is None:
            raise ConfigError(f"saturationDetector refers to undeclared plugin {section['pluginRef']!r}")
        if not isinstance(detector, SaturationDetector):
            raise ConfigError(
                f"saturationDetector refers to plugin {section['pluginRef']!r} of type {detector.type_name!r}, "
                "not a saturation detector (utilization-detector)"
            )
        return detector
    if section is not None:
        inline = PluginSpec(type=SATURATION_DETECTOR, name="saturation-detector", parameters=section)
        return cast(SaturationDetector, _instantiate(inline, ctx))
    detectors = [p for p in plugins.values() if isinstance(p, SaturationDetector)]
    return detectors[0] if detectors else cast(SaturationDetector, _default(SATURATION_DETECTOR, ctx))


def _instantiate(spec: PluginSpec, ctx: BuildContext) -> Plugin:
    """The plugin a spec declares, built from its validated parameters."""
    name = spec.name or spec.type
    cls = plugin_class(spec.type, name)
    try:
        parameters = cls.Parameters.model_validate(spec.parameters or {})
    except ValidationError as error:
        raise ConfigError(f"plugin {name!r} ({spec.type}) has invalid parameters: {error}") from error
    try:
        return cls.create(name, parameters, ctx)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"plugin {name!r} ({spec.type}): {error}") from error


def _default(type_name: str, ctx: BuildContext) -> Plugin:
    """A plugin of `type_name` with default parameters, named after its type."""
    cls = plugin_class(type_name, type_name)
    return cls.create("", cls.Parameters(), ctx)


def _profile(name: str, references: list[PluginReference], plugins: Mapping[str, Plugin], ctx: BuildContext) -> Profile:
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
    picker = pickers[0] if pickers else cast(Picker, _default(DEFAULT_PICKER, ctx))
    return Profile(name, filters, scorers, picker, extra)


BUILTIN_CONFIGS: dict[str, str] = {
    "llmd-default": """
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: token-producer
  parameters: {backend: estimate}
- type: approx-prefix-cache-producer
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
  parameters: {prefixMatchInfoProducerName: approx-prefix-cache-producer}
- type: max-score-picker
- type: metrics-data-source
- type: core-metrics-extractor
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors: [{pluginRef: core-metrics-extractor}]
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
- type: precise-prefix-cache-producer
  parameters:
    speculativeIndexing: true
- type: predicted-ttft-scorer
  parameters:
    learnOnline: true
    backlogWeight: 1.5                   # measured: docs/benchmarks.md, the shapes over three seeds
    spreadCopies: 2                      # measured: docs/benchmarks.md, copies of short shared prompts
    prefixMatchInfoProducerName: precise-prefix-cache-producer
- type: max-score-picker
  parameters: {maxNumOfEndpoints: 3}     # the primary and two fallbacks Envoy retries on
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
