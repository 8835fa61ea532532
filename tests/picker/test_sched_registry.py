"""The plugin registry: plugins declare their type names and parameters, configs build them by type name."""

import re

import pytest

from picker.pool import EndpointSpec, PoolState
from picker.scheduling import ConfigError, PluginParameters, Scheduler, Scorer, load_config, plugin, plugin_types
from picker.scheduling.registry import BuildContext, plugin_class
from picker.scheduling.request import PromptInput, SchedulingRequest

HEADER = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"


@plugin("test-address-scorer")
class AddressScorer(Scorer):
    """A plugin defined outside poolgate's modules: scores one address 1, the others 0."""

    class Parameters(PluginParameters):
        favourite: str

    def __init__(self, name: str = "", *, favourite: str) -> None:
        super().__init__(name)
        self.favourite = favourite

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> "AddressScorer":
        return cls(name, favourite=parameters.favourite)

    def score(self, cycle, endpoints):
        return [1.0 if e.address == self.favourite else 0.0 for e in endpoints]


def test_a_registered_plugin_is_built_from_a_config_with_its_parameters_and_schedules():
    config = load_config(
        HEADER + "plugins:\n- type: test-address-scorer\n  name: fav\n  parameters: {favourite: 10.0.0.2}\n"
    )
    scorer, weight = config.profile().scorers[0]
    assert (type(scorer), scorer.name, scorer.favourite, weight) == (AddressScorer, "fav", "10.0.0.2", 1.0)
    pool = PoolState(lambda: 0.0)
    for i in range(1, 4):
        pool.upsert(EndpointSpec(f"10.0.0.{i}", 8000))
    scheduler = Scheduler(pool, config.profile(), fallbacks=0)
    decision = scheduler.schedule(SchedulingRequest("m", PromptInput(), {}), now=0.0)
    assert decision.endpoints == ("10.0.0.2:8000",)


def test_a_registered_plugin_s_parameters_are_checked_by_name():
    with pytest.raises(
        ConfigError, match=r"(?s)plugin 'test-address-scorer' \(test-address-scorer\) has invalid.*favourite"
    ):
        load_config(HEADER + "plugins:\n- type: test-address-scorer\n")


def test_an_unknown_type_names_the_type_and_lists_every_supported_one():
    with pytest.raises(ConfigError) as error:
        load_config(HEADER + "plugins:\n- type: magic-scorer\n")
    message = str(error.value)
    assert "unknown type 'magic-scorer'" in message
    assert message.endswith(", ".join(plugin_types()))
    assert {"queue-scorer", "kv-cache-scorer", "approx-prefix-cache-producer", "single-profile-handler"} <= set(
        plugin_types()
    )


def test_a_type_name_cannot_be_registered_by_two_classes():
    with pytest.raises(ValueError, match="'queue-scorer' is registered twice"):
        plugin("queue-scorer")(type("OtherQueueScorer", (Scorer,), {}))
    assert plugin_class("queue-scorer", "q").__name__ == "QueueScorer"


# types that cannot stand alone: profile handlers need their decode profile; the precise producer is not implemented
NOT_ALONE = {"disagg-profile-handler", "pd-profile-handler", "precise-prefix-cache-producer"}


@pytest.mark.parametrize("type_name", [t for t in plugin_types() if t not in NOT_ALONE | {"test-address-scorer"}])
def test_every_builtin_type_builds_with_default_parameters(type_name):
    config = load_config(HEADER + f"plugins:\n- type: {type_name}\n  name: p\n")
    assert config.profile().name == "default"
    cls = plugin_class(type_name, "p")
    assert plugin_class(cls.type_name, "p") is cls  # type_name is the class's main name, type_name maybe an alias


@pytest.mark.parametrize(
    "type_name, message",
    [
        ("disagg-profile-handler", "no scheduling profile 'decode' (the decode profile)"),
        ("pd-profile-handler", "no scheduling profile 'decode' (the decode profile)"),
    ],
)
def test_types_that_cannot_stand_alone_say_why(type_name, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(HEADER + f"plugins:\n- type: {type_name}\n  name: p\n")
