"""Filter plugins: the request's routing hints and the freshness of metrics.

- `subset-filter`: keeps the endpoints named by the proxy's subset hint (`ip` = every port of that address,
  `ip:port` = that endpoint); a hint that is present but names no known endpoint leaves nothing (-> 503).
  The scheduler always runs it first.
- `header-based-testing-filter`: the same for the conformance steering list (`test-epp-endpoint-selection`);
  the scheduler always runs it second. It only acts when the server put the list on the request, which it should
  do only when conformance test hooks are enabled.
- the reachability filter (built in, no plugin type): drops endpoints whose latest scrape could not connect (a dead
  pod's server refuses connections), unless that would drop every candidate. The scheduler always runs it third,
  whatever the profile, so a dead pod stops being picked within one scrape interval and not only once its metrics
  are older than a staleness limit (or, in a profile without one, until discovery removes it).
- the served-model filter (built in, no plugin type): drops endpoints whose model list (their `/v1/models`, polled by
  `picker.pool.served`) is known and lacks the request's target model, when some candidate lists it. A server
  without the adapter would answer 404 however idle it is, so affinity scoring alone cannot be trusted with it.
  Endpoints whose list is unknown stay, and a model no candidate lists (an adapter a LoRA resolver loads on demand,
  or one loaded since the last poll) leaves every candidate. The scheduler runs it fourth.
- `stale-metrics-filter`: drops endpoints whose last good scrape is older than `maxAge` (or that were never
  scraped), but only when at least one candidate is fresh, so a pool whose scraping fails keeps serving.
"""

from __future__ import annotations

from collections.abc import Sequence

from picker.pool.state import Endpoint
from picker.scheduling.framework import CycleState, Filter
from picker.scheduling.registry import BuildContext, Duration, PluginParameters, plugin


def _split_address(entry: str) -> tuple[str, str | None]:
    """Split `ip`, `ip:port`, `[v6]` or `[v6]:port` into (address, port or None)."""
    entry = entry.strip()
    if entry.startswith("["):
        address, _, rest = entry[1:].partition("]")
        return address, rest[1:] if rest.startswith(":") else None
    if entry.count(":") == 1:
        address, port = entry.split(":")
        return address, port
    return entry, None


def select_addresses(endpoints: Sequence[Endpoint], entries: Sequence[str]) -> list[Endpoint]:
    """Keep the endpoints named by `ip` (all its ports) or `ip:port` entries, in candidate order."""
    addresses: set[str] = set()
    exact: set[tuple[str, str]] = set()
    for entry in entries:
        address, port = _split_address(entry)
        if not address:
            continue
        if port is None:
            addresses.add(address)
        else:
            exact.add((address, port))
    return [e for e in endpoints if e.address in addresses or (e.address, str(e.port)) in exact]


@plugin("subset-filter")
class SubsetFilter(Filter):
    """Keeps only the endpoints of the proxy's subset hint, when the request carries one."""

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        subset = cycle.request.subset
        return endpoints if subset is None else select_addresses(endpoints, subset)


@plugin("header-based-testing-filter")
class HeaderBasedTestingFilter(Filter):
    """Keeps only the endpoints of the conformance steering list, when the request carries one."""

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        steering = cycle.request.steering
        return endpoints if steering is None else select_addresses(endpoints, steering)


class ReachableFilter(Filter):
    """Drops endpoints whose latest scrape could not connect, unless that would drop every candidate."""

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        if not any(e.metrics.unreachable for e in endpoints):
            return endpoints
        reachable = [e for e in endpoints if not e.metrics.unreachable]
        return reachable if reachable else endpoints


class ServedModelFilter(Filter):
    """Drops endpoints known not to serve the request's model, when some candidate is known to serve it."""

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        model = cycle.request.target_model
        if not any(e.metrics.served_models is not None and model in e.metrics.served_models for e in endpoints):
            return endpoints
        return [e for e in endpoints if e.metrics.served_models is None or model in e.metrics.served_models]


BUILT_IN_FILTERS: tuple[Filter, ...] = (ReachableFilter(), ServedModelFilter())
"""What every profile runs after the routing hints' filters, before its own."""


@plugin("stale-metrics-filter")
class StaleMetricsFilter(Filter):
    """Drops endpoints with metrics older than `max_age` seconds, unless that would drop every candidate."""

    class Parameters(PluginParameters):
        maxAge: Duration = 1.0

    @classmethod
    def create(cls, name: str, parameters: Parameters, context: BuildContext) -> StaleMetricsFilter:
        return cls(name, max_age=parameters.maxAge)

    def __init__(self, name: str = "", *, max_age: float = 1.0) -> None:
        super().__init__(name)
        if max_age <= 0:
            raise ValueError("maxAge must be positive")
        self.max_age = max_age

    def filter(self, cycle: CycleState, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        oldest = cycle.now - self.max_age
        fresh = [e for e in endpoints if e.metrics.updated_at is not None and e.metrics.updated_at >= oldest]
        return fresh if fresh else endpoints
