"""The load book: the requests peer replicas of a pool's picker have sent to its endpoints and not finished.

Several picker replicas serve one pool when Envoy spreads its picker calls over them. The engines' scraped queues lag
(a scrape every 50 ms), so each replica's scorers count the requests it sent itself since the last scrape and the
prefill work it sent that is not done yet; without the others' requests, each replica predicts around only its own
share of the load. So every replica announces its requests to its peers (the load exchange,
`picker.server.loadexchange`), as events numbered per replica:

    (PICKED, n, endpoint, prompt tokens, uncached tokens)   the request went there (again when a fallback served it)
    (FIRST_TOKEN, n)                                        its prefill is done
    (ENDED, n)                                              its response ended or failed

and each replica books its peers' events here, keyed by (peer, n), through its scheduler (`Scheduler.peer_pick`,
`peer_first_token`, `peer_complete`), so that its scorers count them as they count their own requests.

The transport may lose, repeat and reorder events; none of that leaves wrong load for long:
- a repeated PICKED naming the same endpoint is ignored; one naming another endpoint moves the request;
- a FIRST_TOKEN or ENDED that arrives before its PICKED is remembered (for `ttl` seconds): the late PICKED then
  books the request without prefill work, or not at all;
- a request not ended within `ttl` seconds of its PICKED is forgotten (booked as ended), so a lost ENDED or a dead
  peer leaves no phantom load;
- a restarted peer announces under a new name (each process names itself once), so its numbers are new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from picker.scheduling.framework import PeerPick
    from picker.scheduling.scheduler import Scheduler

PICKED = "p"
FIRST_TOKEN = "f"
ENDED = "e"
LoadEvent = tuple[Any, ...]  # one of the events above
MAX_OPEN = 100_000  # peers' requests booked at most (a flooding peer cannot grow the book without bound)


class LoadBook:
    """The peers' open requests on one pool, booked through the pool's scheduler (see the module docstring)."""

    def __init__(self, scheduler: Scheduler, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("the load book's TTL must be positive")
        self.scheduler = scheduler
        self.ttl = ttl
        self._open: dict[tuple[str, int], tuple[float, PeerPick]] = {}  # (peer, n) -> (forget at, booking)
        self._early: dict[tuple[str, int], tuple[float, str]] = {}  # (peer, n) -> (forget at, FIRST_TOKEN | ENDED)
        self.rejected = 0  # malformed events and picks over MAX_OPEN

    def apply(self, peer: str, events: Iterable[Sequence[Any]], now: float) -> None:
        """Book a peer's events, in order (malformed ones are counted in `rejected` and skipped)."""
        self.expire(now)
        for event in events:
            try:
                self._apply(peer, event, now)
            except (TypeError, ValueError, IndexError):
                self.rejected += 1

    def _apply(self, peer: str, event: Sequence[Any], now: float) -> None:
        kind, number = event[0], event[1]
        if not isinstance(number, int):
            raise TypeError("request numbers are integers")
        key = (peer, number)
        if kind == PICKED:
            self._picked(key, event[2], event[3], event[4], now)
        elif kind == FIRST_TOKEN:
            entry = self._open.get(key)
            if entry is not None:
                self.scheduler.peer_first_token(entry[1], now)
            elif key not in self._early:
                self._early[key] = (now + self.ttl, FIRST_TOKEN)
        elif kind == ENDED:
            entry = self._open.pop(key, None)
            if entry is not None:
                self.scheduler.peer_complete(entry[1], now)
            else:
                self._early[key] = (now + self.ttl, ENDED)
        else:
            raise ValueError(f"unknown load event {kind!r}")

    def _picked(self, key: tuple[str, int], endpoint: Any, tokens: Any, uncached: Any, now: float) -> None:
        if not isinstance(endpoint, str) or not isinstance(tokens, int) or not isinstance(uncached, int | float):
            raise TypeError("a pick is (endpoint, prompt tokens, uncached tokens)")
        if tokens < 0 or not 0 <= uncached <= tokens:
            raise ValueError("token counts must satisfy 0 <= uncached <= prompt tokens")
        early = self._early.pop(key, None)
        if early is not None and early[1] == ENDED:
            return
        entry = self._open.get(key)
        if entry is not None:
            if entry[1].endpoint == endpoint:  # a repeat
                return
            self.scheduler.peer_complete(entry[1], now)  # moved to a fallback: keeps its place and deadline
        elif len(self._open) >= MAX_OPEN:
            raise ValueError("too many open peer requests")
        first_token = early is not None or (entry is not None and entry[1].first_token)
        pick = self.scheduler.peer_pick(endpoint, tokens, float(uncached), now, first_token=first_token)
        self._open[key] = (entry[0] if entry is not None else now + self.ttl, pick)

    def expire(self, now: float) -> None:
        """Forget (book as ended) the requests announced more than `ttl` seconds ago, and old early events."""
        while self._open:
            key, (deadline, pick) = next(iter(self._open.items()))
            if deadline > now:
                break
            del self._open[key]
            self.scheduler.peer_complete(pick, now)
        while self._early:
            key, (deadline, _) = next(iter(self._early.items()))
            if deadline > now:
                break
            del self._early[key]

    def outstanding(self, now: float) -> dict[str, tuple[int, int]]:
        """Per endpoint, the peers' open requests and how many of them still wait for their first token."""
        self.expire(now)
        counts: dict[str, tuple[int, int]] = {}
        for _, pick in self._open.values():
            requests, prefilling = counts.get(pick.endpoint, (0, 0))
            counts[pick.endpoint] = (requests + 1, prefilling + (not pick.first_token))
        return counts

    def __len__(self) -> int:
        return len(self._open)
