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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from picker.scheduling.framework import Filter, Picker, Plugin, Profile, Scorer
from picker.scheduling.registry import BuildContext, ConfigError, plugin_class
from picker.scheduling.saturation import SaturationDetector

API_VERSIONS = ("llm-d.ai/v1alpha1", "llm-d.ai/v1", "inference.networking.x-k8s.io/v1alpha1")
DEFAULT_PICKER = "max-score-picker"  # a profile without a picker ranks with this one
SATURATION_DETECTOR = "utilization-detector"  # what the `saturationDetector` section configures, and the default


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


class EndpointPickerConfig(BaseModel):
    """The upstream EndpointPickerConfig document (the parts poolgate reads)."""

    model_config = ConfigDict(extra="forbid")
    apiVersion: Literal[API_VERSIONS]  # type: ignore[valid-type]
    kind: Literal["EndpointPickerConfig"]
    plugins: list[PluginSpec] = Field(default_factory=list)
    schedulingProfiles: list[SchedulingProfileSpec] = Field(default_factory=list)
    saturationDetector: dict[str, Any] | None = None  # the parameters of a utilization-detector
    featureGates: list[str] = Field(default_factory=list)
    dataLayer: Any = None
    flowControl: Any = None
    parser: Any = None
    requestHandler: Any = None


@dataclass(slots=True)
class PickerConfig:
    """A built config: its profiles by name and the pool saturation detector."""

    profiles: dict[str, Profile]
    saturation: SaturationDetector

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
    return _build(config, BuildContext(rng if rng is not None else random.Random()))


def _build(config: EndpointPickerConfig, ctx: BuildContext) -> PickerConfig:
    specs: dict[str, PluginSpec] = {}
    for spec in config.plugins:
        name = spec.name or spec.type
        if name in specs:
            raise ConfigError(f"plugin name {name!r} is declared twice")
        plugin_class(spec.type, name)  # an unknown type is an error before anything is built
        specs[name] = spec
    # producers of shared objects (lower build_order) first, so that the plugins reading them share their parameters
    ordered = sorted(specs.values(), key=lambda spec: plugin_class(spec.type, "").build_order)
    built = {id(spec): _instantiate(spec, ctx) for spec in ordered}
    plugins = {name: built[id(spec)] for name, spec in specs.items()}  # back to declaration order

    detectors = [p for p in plugins.values() if isinstance(p, SaturationDetector)]
    saturation: SaturationDetector
    if config.saturationDetector is not None:
        section = PluginSpec(type=SATURATION_DETECTOR, name="saturation-detector", parameters=config.saturationDetector)
        saturation = cast(SaturationDetector, _instantiate(section, ctx))
    else:
        saturation = detectors[0] if detectors else cast(SaturationDetector, _default(SATURATION_DETECTOR, ctx))

    if not config.schedulingProfiles:
        every = [
            PluginReference(pluginRef=name)
            for name, p in plugins.items()
            if isinstance(p, (Filter, Scorer, Picker)) and not isinstance(p, SaturationDetector)
        ]
        return PickerConfig({"default": _profile("default", every, plugins, ctx)}, saturation)
    profiles: dict[str, Profile] = {}
    for profile_spec in config.schedulingProfiles:
        if profile_spec.name in profiles:
            raise ConfigError(f"scheduling profile {profile_spec.name!r} is declared twice")
        profiles[profile_spec.name] = _profile(profile_spec.name, profile_spec.plugins, plugins, ctx)
    return PickerConfig(profiles, saturation)


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
