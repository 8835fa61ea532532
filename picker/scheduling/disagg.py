"""Prefill/decode disaggregation, as the reference picker does it.

- `decode-filter` keeps the pods whose label `llm-d.ai/role` is `decode`, `prefill-decode`, `both` or
  `encode-prefill-decode`, and the pods without the label; `prefill-filter` keeps `prefill`, `encode-prefill`,
  `prefill-decode`, `both` and `encode-prefill-decode` (a pod without the label is not a prefill pod).
- `disagg-profile-handler` (`profiles: {decode, prefill}`, default names `decode` and `prefill`;
  `deciders: {prefill: <decider plugin>}`; the older flat parameters `decodeProfile`, `prefillProfile`,
  `deciderPluginName`, `prefillDeciderPluginName` too) makes the scheduler run the decode profile; the decode pick is
  the destination. Then, when the config has the prefill profile and the decider says so for the decode pick, it runs
  the prefill profile and names its pick in the request header `x-prefiller-host-port` (`ip:port`), which the
  decode pod's sidecar reads to have the prompt prefilled there first. The prefix index credits the request's
  blocks to both pods. Without a decider, requests are never disaggregated. Encode disaggregation (multimodal) is
  not supported: a config naming an encode decider is refused.
- `prefix-based-pd-decider` (`nonCachedTokens`, default 0 = never): disaggregate when the prompt has at least
  `nonCachedTokens` tokens (estimated, 4 characters per token) and at least that many are not cached on the decode
  pod (prefix index: matched blocks x block size).
- `always-disagg-pd-decider`: always disaggregate.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from picker.pool.state import Endpoint
from picker.scheduling.filters import BUILT_IN_FILTERS
from picker.scheduling.framework import CycleState, Decision, Filter, Plugin, Profile, ProfileHandler, score_candidates
from picker.scheduling.prefix import PrefixIndex, shared_prefix_index
from picker.scheduling.registry import BuildContext, ConfigError, PluginParameters, plugin
from poolgate.api.contract import PREFILLER_HOST_PORT_HEADER

ROLE_LABEL = "llm-d.ai/role"
DECODE_ROLES = frozenset({"decode", "prefill-decode", "both", "encode-prefill-decode"})
PREFILL_ROLES = frozenset({"prefill", "encode-prefill", "prefill-decode", "both", "encode-prefill-decode"})


class _RoleFilter(Filter):
    roles: frozenset[str] = frozenset()
    allows_no_label = False

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        kept = []
        for endpoint in endpoints:
            role = endpoint.labels.get(ROLE_LABEL)
            if role in self.roles or (role is None and self.allows_no_label):
                kept.append(endpoint)
        return kept


@plugin("decode-filter")
class DecodeFilter(_RoleFilter):
    """Keeps the pods that decode (by role label; unlabelled pods too)."""

    roles = DECODE_ROLES
    allows_no_label = True


@plugin("prefill-filter")
class PrefillFilter(_RoleFilter):
    """Keeps the pods that prefill (by role label)."""

    roles = PREFILL_ROLES


class PdDecider(Plugin):
    """Decides whether a request is prefilled on another pod than its decode pod (built before the handler)."""

    def disaggregate(self, cycle: CycleState, decode: Endpoint, candidates: Sequence[Endpoint]) -> bool:
        raise NotImplementedError


@plugin("prefix-based-pd-decider")
class PrefixBasedPdDecider(PdDecider):
    """Disaggregates when enough of the prompt is not cached on the decode pod."""

    class Parameters(PluginParameters):
        nonCachedTokens: int = Field(default=0, ge=0)

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> PrefixBasedPdDecider:
        return cls(name, index=shared_prefix_index(context, None, name), non_cached_tokens=parameters.nonCachedTokens)

    def __init__(self, name: str = "", *, index: PrefixIndex, non_cached_tokens: int = 0) -> None:
        super().__init__(name)
        self.index = index
        self.non_cached_tokens = non_cached_tokens

    def shared_plugins(self) -> tuple[Plugin, ...]:
        return (self.index,)

    def disaggregate(self, cycle: CycleState, decode: Endpoint, candidates: Sequence[Endpoint]) -> bool:
        threshold = self.non_cached_tokens
        prompt_tokens = cycle.request.prompt.estimated_tokens
        if threshold == 0 or prompt_tokens < threshold:
            return False
        cached = self.index.cycle_match(cycle, candidates).cached_tokens(decode.key)
        return prompt_tokens - cached >= threshold


@plugin("always-disagg-pd-decider")
class AlwaysDisaggPdDecider(PdDecider):
    """Disaggregates every request."""

    def disaggregate(self, cycle: CycleState, decode: Endpoint, candidates: Sequence[Endpoint]) -> bool:
        return True


class _ProfileNames(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    decode: str | None = None
    prefill: str | None = None
    encode: str | None = None


class _DeciderNames(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prefill: str | None = None
    encode: str | None = None


@plugin("disagg-profile-handler", "pd-profile-handler")  # second name: the deprecated upstream type
class DisaggProfileHandler(ProfileHandler):
    """Runs the decode profile, then the prefill profile when the decider says so (see the module docstring)."""

    class Parameters(PluginParameters):
        profiles: _ProfileNames = _ProfileNames()
        deciders: _DeciderNames = _DeciderNames()
        decodeProfile: str | None = None  # the older flat parameters
        prefillProfile: str | None = None
        encodeProfile: str | None = None
        deciderPluginName: str | None = None
        prefillDeciderPluginName: str | None = None
        encodeDeciderPluginName: str | None = None

    build_order = 1  # after the deciders it refers to

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> DisaggProfileHandler:
        p = parameters
        flat = (p.decodeProfile, p.prefillProfile, p.encodeProfile, p.deciderPluginName, p.prefillDeciderPluginName)
        if any(flat) and (p.profiles != _ProfileNames() or p.deciders != _DeciderNames()):
            raise ConfigError(
                f"plugin {name!r} (disagg-profile-handler): use either the nested parameters (profiles, deciders) "
                "or the deprecated flat ones (decodeProfile, prefillProfile, deciderPluginName, ...), not both"
            )
        if p.deciders.encode or p.encodeDeciderPluginName:
            raise ConfigError(
                f"plugin {name!r} (disagg-profile-handler): encode disaggregation (multimodal) is not supported"
            )
        decider_name = p.deciders.prefill or p.prefillDeciderPluginName or p.deciderPluginName
        decider = None
        if decider_name is not None:
            decider = context.plugins.get(decider_name)
            if not isinstance(decider, PdDecider):
                raise ConfigError(
                    f"plugin {name!r} (disagg-profile-handler): deciders.prefill {decider_name!r} names no declared "
                    "decider plugin (prefix-based-pd-decider, always-disagg-pd-decider)"
                )
        return cls(
            name,
            decode_profile=p.profiles.decode or p.decodeProfile or "decode",
            prefill_profile=p.profiles.prefill or p.prefillProfile or "prefill",
            decider=decider,
        )

    def __init__(
        self,
        name: str = "",
        *,
        decode_profile: str = "decode",
        prefill_profile: str = "prefill",
        decider: PdDecider | None = None,
    ) -> None:
        super().__init__(name)
        self.decode_profile = decode_profile
        self.prefill_profile = prefill_profile
        self.decider = decider
        self.prefill: Profile | None = None

    def bind(self, profiles: dict[str, Profile]) -> str:
        if self.decode_profile not in profiles:
            raise ConfigError(
                f"plugin {self.name!r} (disagg-profile-handler): no scheduling profile {self.decode_profile!r} "
                f"(the decode profile); the config has {sorted(profiles)}"
            )
        self.prefill = profiles.get(self.prefill_profile)
        return self.decode_profile

    def shared_plugins(self) -> tuple[Plugin, ...]:
        extra: list[Plugin] = [self.decider] if self.decider is not None else []
        if self.prefill is not None:
            extra.extend(self.prefill.plugins())
        return tuple(extra)

    def after_primary(self, cycle: CycleState, decision: Decision) -> None:
        prefill, decider = self.prefill, self.decider
        decode = cycle.pool.get(decision.endpoints[0])
        if prefill is None or decider is None or decode is None:
            return
        endpoints = cycle.pool.endpoints()
        if not decider.disaggregate(cycle, decode, endpoints):
            return
        filters = [*BUILT_IN_FILTERS, *prefill.filters]  # as the scheduler does for the decode profile
        candidates, totals, _ = score_candidates(cycle, filters, prefill.scorers, endpoints)
        if not candidates:
            return  # no prefill pod: the decode pod prefills itself
        best = prefill.picker.pick(cycle, candidates, totals, 1)[0]
        chosen = candidates[best]
        decision.prefill = chosen.key
        host = f"[{chosen.address}]" if ":" in chosen.address else chosen.address
        decision.request_headers[PREFILLER_HOST_PORT_HEADER] = f"{host}:{chosen.port}"
