"""The plugin registry: EndpointPickerConfig type names -> the plugin classes that build them.

A plugin class registers itself with `@plugin("type-name", ...)` (the first name is its `type_name`, further names
are aliases), declares its parameter model as `Parameters` (a `PluginParameters` subclass whose field names are the
upstream parameter names) and builds itself from validated parameters in `create`:

    @plugin("queue-scorer")
    class QueueScorer(Scorer):
        def score(self, cycle, endpoints): ...

    @plugin("stale-metrics-filter")
    class StaleMetricsFilter(Filter):
        class Parameters(PluginParameters):
            maxAge: Duration = 1.0

        @classmethod
        def create(cls, name, parameters, context):
            return cls(name, max_age=parameters.maxAge)

The modules of `PLUGIN_MODULES` are imported on the first look-up, which registers the built-in plugins.
"""

from __future__ import annotations

import importlib
import random
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

PLUGIN_MODULES = (
    "picker.scheduling.filters",
    "picker.scheduling.scorers",
    "picker.scheduling.pickers",
    "picker.scheduling.prefix",
    "picker.scheduling.saturation",
    "picker.scheduling.ttft",
    "picker.scheduling.handlers",
    "picker.scheduling.tokens",
    "picker.scheduling.datalayer",
    "picker.scheduling.parsers",
    "picker.scheduling.disagg",
    "picker.scheduling.precise_prefix",
)


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


class PluginParameters(BaseModel):
    """Base of the parameter models: unknown parameters are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParameters(PluginParameters):
    """The parameters of plugins that take none."""


class BuildContext:
    """What the plugin factories of one config share: the RNG and objects several plugins use, by key."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.shared: dict[str, Any] = {}
        self.plugins: dict[str, Any] = {}  # the plugins built so far, by name (lower build_order first)


_REGISTRY: dict[str, type] = {}
_PluginClass = TypeVar("_PluginClass", bound=type)


def plugin(type_name: str, *aliases: str) -> Callable[[_PluginClass], _PluginClass]:
    """Class decorator: register a plugin class under its EndpointPickerConfig type name (and aliases)."""

    def register(cls: _PluginClass) -> _PluginClass:
        cls.type_name = type_name  # type: ignore[attr-defined]  # every plugin class declares type_name
        for name in (type_name, *aliases):
            if _REGISTRY.get(name, cls) is not cls:
                raise ValueError(
                    f"plugin type {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})"
                )
            _REGISTRY[name] = cls
        return cls

    return register


def _load_builtin_plugins() -> None:
    for module in PLUGIN_MODULES:
        importlib.import_module(module)


def plugin_class(type_name: str, plugin_name: str) -> Any:
    """The class registered under `type_name`; an unknown type is a ConfigError naming the plugin and the choices."""
    _load_builtin_plugins()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise ConfigError(
            f"plugin {plugin_name!r} has unknown type {type_name!r}; poolgate supports: {', '.join(plugin_types())}"
        ) from None


def plugin_types() -> list[str]:
    """Every registered type name (aliases included), sorted."""
    _load_builtin_plugins()
    return sorted(_REGISTRY)
