"""Scheduling for the endpoint picker: plugins (filters, scorers, pickers) composed into profiles, and the scheduler.

    config = builtin_config("poolgate-default")           # or load_config(endpoint_picker_config_yaml)
    scheduler = Scheduler(pool, config.profile(), saturation=config.saturation, fallbacks=2)
    request = SchedulingRequest("llama-3", PromptInput.from_body(body), headers, priority=0)
    decision = scheduler.schedule(request, now=pool.clock())

See `picker.scheduling.scheduler` for the request lifecycle, `picker.scheduling.registry` for how a plugin declares
its parameters and registers its type name, and docs/scheduling.md for the plugins.
"""

from picker.scheduling.config import BUILTIN_CONFIGS, EndpointPickerConfig, PickerConfig, builtin_config, load_config
from picker.scheduling.framework import CycleState, Decision, Filter, Outcome, Picker, Plugin, Profile, Scorer
from picker.scheduling.prefix import PrefixIndex, PrefixMatch, prefix_hashes
from picker.scheduling.registry import ConfigError, PluginParameters, plugin, plugin_types
from picker.scheduling.request import PromptInput, SchedulingRequest, go_json
from picker.scheduling.saturation import SaturationDetector, UtilizationDetector
from picker.scheduling.scheduler import Scheduler
from picker.scheduling.scorers import SESSION_TOKEN_HEADER, decode_session_token, encode_session_token

__all__ = [
    "BUILTIN_CONFIGS",
    "SESSION_TOKEN_HEADER",
    "ConfigError",
    "CycleState",
    "Decision",
    "EndpointPickerConfig",
    "Filter",
    "Outcome",
    "Picker",
    "PickerConfig",
    "Plugin",
    "PluginParameters",
    "PrefixIndex",
    "PrefixMatch",
    "Profile",
    "PromptInput",
    "SaturationDetector",
    "Scheduler",
    "SchedulingRequest",
    "Scorer",
    "UtilizationDetector",
    "builtin_config",
    "decode_session_token",
    "encode_session_token",
    "go_json",
    "load_config",
    "plugin",
    "plugin_types",
    "prefix_hashes",
]
