"""The scheduler: runs one profile for a request against a pool and manages the request's lifecycle hooks.

    scheduler = Scheduler(pool, profile, saturation=config.saturation, fallbacks=2)
    decision = scheduler.schedule(request, now=pool.clock())
    if decision.outcome is Outcome.PICKED:
        header_value = decision.destination                 # "ip:port,ip:port,ip:port"
        ...
        scheduler.on_served(decision, served_key)           # when the proxy reports the served endpoint
        scheduler.on_first_token(decision, now)             # first response bytes (feeds TTFT learning)
        headers = scheduler.response_headers(decision, served_key)   # e.g. the session token
        scheduler.on_complete(decision, now)                # response ended or failed: releases in-flight
    elif decision.outcome is Outcome.SHED: ...              # 429
    else: ...                                               # NO_ENDPOINT: 503

Order of a cycle: no endpoint in the pool -> NO_ENDPOINT; priority < 0 and pool saturated -> SHED; an admitter
of the config (e.g. `probabilistic-admitter`) refuses -> SHED; the subset hint and conformance steering filters,
then the reachability filter (endpoints whose scrape could not connect are left out while another is reachable),
then the profile's filters (an empty result from the hint or steering -> NO_ENDPOINT, from a profile filter ->
FILTERED_OUT, as upstream, whose scheduler error is a 429); the weighted scorers; the picker ranks 1 + `fallbacks`
endpoints (without `fallbacks`: its own `maxNumOfEndpoints`); the request is booked in flight on the primary; the
profile handler (if any) runs further profiles, e.g. the prefill profile of a disaggregated request; the plugins'
`after_pick` hooks run. `now` is always passed in: the scheduler never reads a clock.

Replicas of one pool's picker share their load (`picker.scheduling.loadbook`): with an `outbox`, the scheduler
announces each pick, first token and end of its own requests there; `peer_pick`, `peer_first_token` and
`peer_complete` book the requests its peers announced (in the pool state and in the plugins' `on_peer_*` hooks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from picker.pool.state import Endpoint, InflightTicket, PoolState
from picker.scheduling.filters import BUILT_IN_FILTERS, HeaderBasedTestingFilter, SubsetFilter
from picker.scheduling.framework import (
    Admitter,
    CycleState,
    Decision,
    Filter,
    Outcome,
    PeerPick,
    Plugin,
    Profile,
    score_candidates,
)
from picker.scheduling.loadbook import ENDED, FIRST_TOKEN, PICKED, LoadEvent
from picker.scheduling.request import SchedulingRequest
from picker.scheduling.saturation import SaturationDetector, UtilizationDetector


def _overrides(plugin: Plugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)


class Scheduler:
    """Schedules requests onto a pool with one profile (see the module docstring)."""

    def __init__(
        self,
        pool: PoolState,
        profile: Profile,
        *,
        saturation: SaturationDetector | None = None,
        fallbacks: int | None = None,
    ) -> None:
        if fallbacks is not None and fallbacks < 0:
            raise ValueError("fallbacks must not be negative")
        self.pool = pool
        self.profile = profile
        self.saturation = saturation if saturation is not None else UtilizationDetector()
        # endpoints per pick: 1 + `fallbacks` when given, else what the profile's picker returns (maxNumOfEndpoints)
        self.endpoints_per_pick = 1 + fallbacks if fallbacks is not None else profile.picker.max_endpoints
        self._filters = [SubsetFilter(), HeaderBasedTestingFilter(), *BUILT_IN_FILTERS, *profile.filters]
        self._scorers = [(scorer, float(weight)) for scorer, weight in profile.scorers if weight]
        plugins = profile.plugins()
        self._prepare = [p for p in plugins if p.prepare_min_bytes is not None]
        self._after_pick = [p for p in plugins if _overrides(p, "after_pick")]
        self._first_token = [p for p in plugins if _overrides(p, "on_first_token")]
        self._complete = [p for p in plugins if _overrides(p, "on_complete")]
        self._headers = [p for p in plugins if _overrides(p, "response_headers")]
        self._removed = [p for p in plugins if _overrides(p, "endpoint_removed")]
        self._peer_pick = [p for p in plugins if _overrides(p, "on_peer_pick")]
        self._peer_first_token = [p for p in plugins if _overrides(p, "on_peer_first_token")]
        self._peer_complete = [p for p in plugins if _overrides(p, "on_peer_complete")]
        self.outbox: Callable[[LoadEvent], None] | None = None  # where this replica's load goes to its peers
        self._shared = 0  # requests announced to the peers so far
        self._admitters = [p for p in plugins if isinstance(p, Admitter)]
        if self._removed:
            pool.subscribe(removed=self._endpoint_removed)
        for plugin in plugins:
            if _overrides(plugin, "attach"):
                plugin.attach(pool)

    def close(self) -> None:
        """Retire the scheduler: its plugins release what they hold (e.g. event subscriptions)."""
        for plugin in self.profile.plugins():
            plugin.close()

    def _endpoint_removed(self, key: str) -> None:
        for plugin in self._removed:
            plugin.endpoint_removed(key)

    @property
    def prepares(self) -> bool:
        """Whether a plugin of the profile does slow per-request work that `prepare` runs ahead of the cycle."""
        return bool(self._prepare)

    def preparation_threshold(self) -> int | None:
        """The smallest body of a request arriving now whose preparation goes to a worker thread (the least of the
        plugins' that have work now); None when none has (then a worker thread would only cost a round trip)."""
        thresholds = [plugin.prepare_min_bytes or 0 for plugin in self._prepare if plugin.needs_preparation()]
        return min(thresholds) if thresholds else None

    def prepare(self, body: Mapping[str, Any]) -> None:
        """The plugins' slow per-request work for a parsed request body (blocking: run it off the event loop)."""
        for plugin in self._prepare:
            plugin.prepare(body)

    def schedule(self, request: SchedulingRequest, now: float) -> Decision:
        """Choose the endpoints for a request at clock time `now`; see `Decision` for the outcome."""
        profile = self.profile.name
        endpoints = self.pool.endpoints()
        if not endpoints:
            return Decision(Outcome.NO_ENDPOINT, request, profile, reason="the pool has no ready endpoint")
        if request.priority < 0 and self.saturation.saturation(endpoints, now) >= 1.0:
            return Decision(Outcome.SHED, request, profile, reason="the pool is saturated")
        for admitter in self._admitters:
            if not admitter.admit(request, endpoints, now):
                return Decision(Outcome.SHED, request, profile, reason=f"refused by {admitter.name}")
        cycle = CycleState(request, now, self.pool)
        candidates, totals, rejected_by = self._score(cycle)
        if rejected_by is not None:
            profile_filter = any(rejected_by is f for f in self.profile.filters)
            outcome = Outcome.FILTERED_OUT if profile_filter else Outcome.NO_ENDPOINT
            return Decision(outcome, request, profile, reason=f"no endpoint passed {rejected_by.name}", cycle=cycle)
        ranked = self.profile.picker.pick(cycle, candidates, totals, self.endpoints_per_pick)
        keys = tuple(candidates[i].key for i in ranked)
        ticket = self.pool.dispatch(keys[0], request.prompt.estimated_tokens, now)
        decision = Decision(Outcome.PICKED, request, profile, keys, ticket=ticket, cycle=cycle)
        if self.profile.handler is not None:
            self.profile.handler.after_primary(cycle, decision)
        for plugin in self._after_pick:
            plugin.after_pick(cycle, decision)
        cycle.end()
        if self.outbox is not None:
            self._shared += 1
            decision.shared_as = self._shared
            self._announce_pick(decision, ticket)
        return decision

    def _announce_pick(self, decision: Decision, ticket: InflightTicket) -> None:
        """Tell the peers where the request went (its prefill work: the predicted uncached tokens, else all)."""
        uncached = decision.uncached_tokens
        tokens = ticket.prompt_tokens
        if self.outbox is not None and decision.shared_as is not None:
            self.outbox(
                (PICKED, decision.shared_as, ticket.endpoint_key, tokens, tokens if uncached is None else uncached)
            )

    def explain(self, request: SchedulingRequest, now: float) -> dict[str, float]:
        """The summed weighted score of every candidate that passes the filters, without picking or booking."""
        candidates, totals, _ = self._score(CycleState(request, now, self.pool))
        return {endpoint.key: total for endpoint, total in zip(candidates, totals)}

    def _score(self, cycle: CycleState) -> tuple[Sequence[Endpoint], list[float], Filter | None]:
        """Run the filters and the weighted scorers; returns (candidates, totals, the filter that left none)."""
        return score_candidates(cycle, self._filters, self._scorers, self.pool.endpoints())

    def on_served(self, decision: Decision, served: str) -> None:
        """Record the endpoint the proxy actually used; a fallback takes over the primary's in-flight booking."""
        decision.served = served
        ticket = decision.ticket
        if ticket is not None and not ticket.released and served != ticket.endpoint_key:
            self.pool.release(ticket)
            decision.ticket = self.pool.dispatch(served, ticket.prompt_tokens, ticket.dispatched_at)
            if self.outbox is not None and decision.shared_as is not None:  # the peers move it too
                self._announce_pick(decision, decision.ticket)

    def on_first_token(self, decision: Decision, now: float) -> None:
        """Record the arrival of the first response token (once); plugins learn from the TTFT."""
        if decision.first_token_at is not None or decision.ticket is None:
            return
        decision.first_token_at = now
        ttft = now - decision.ticket.dispatched_at
        for plugin in self._first_token:
            plugin.on_first_token(decision, ttft)
        if self.outbox is not None and decision.shared_as is not None:
            self.outbox((FIRST_TOKEN, decision.shared_as))

    def on_complete(self, decision: Decision, now: float) -> None:
        """Release the request's in-flight booking when its response ended (or failed); idempotent."""
        ticket = decision.ticket
        if ticket is None or ticket.released:
            return
        self.pool.release(ticket)
        for plugin in self._complete:
            plugin.on_complete(decision, now)
        if self.outbox is not None and decision.shared_as is not None:
            self.outbox((ENDED, decision.shared_as))

    def peer_pick(
        self, endpoint: str, prompt_tokens: int, uncached_tokens: float, now: float, first_token: bool = False
    ) -> PeerPick:
        """Book a request a peer replica announced it sent to `endpoint` (`first_token`: its prefill is done)."""
        ticket = self.pool.dispatch(endpoint, prompt_tokens, now, own=False)
        pick = PeerPick(endpoint, prompt_tokens, uncached_tokens, ticket, first_token)
        for plugin in self._peer_pick:
            plugin.on_peer_pick(pick, now)
        return pick

    def peer_first_token(self, pick: PeerPick, now: float) -> None:
        """A peer's request has its first token (once)."""
        if pick.first_token:
            return
        pick.first_token = True
        for plugin in self._peer_first_token:
            plugin.on_peer_first_token(pick, now)

    def peer_complete(self, pick: PeerPick, now: float) -> None:
        """A peer's request ended, or is forgotten (idempotent)."""
        if pick.ticket.released:
            return
        self.pool.release(pick.ticket)
        for plugin in self._peer_complete:
            plugin.on_peer_complete(pick, now)

    def response_headers(self, decision: Decision, served: str) -> dict[str, str]:
        """Headers the profile's plugins want on the client response (e.g. `x-session-token`)."""
        headers: dict[str, str] = {}
        for plugin in self._headers:
            headers.update(plugin.response_headers(decision, served))
        return headers
