"""Picked requests waiting for the call that observes their response.

When the gateway observes responses apart from the pick (`poolgate.translate.policy.decide`), each request reaches
the picker twice: the picking call, which ends once the request is answered, and an observe-only call that follows
the request from its headers to the end of its response. The picking call hands its exchange over with an id that
goes back to Envoy in `envoy.lb` metadata; Envoy forwards that metadata to the observer call, whose first message
claims the exchange. A pick nobody claims within `hold_s` (the client left before Envoy went on, or the observer call
reached another picker process) releases its in-flight booking.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from picker.server.exchange import PickerExchange

HOLD_S = 10.0  # an observer call claims its pick within milliseconds of the pick's answer


class Handoffs:
    """Exchanges handed over by picking calls, by pick id, until an observer call claims them."""

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._prefix = secrets.token_hex(4)  # another picker process never claims this process's picks
        self._numbers = itertools.count()
        self._held: dict[str, tuple[float, PickerExchange]] = {}

    def hold(self, exchange: PickerExchange) -> str:
        """Hold `exchange` for its observer call; the pick id that claims it."""
        now = time.monotonic()
        self._expire(now)
        pick_id = f"{self._prefix}-{next(self._numbers)}"
        self._held[pick_id] = (now, exchange)
        return pick_id

    def claim(self, pick_id: str | None) -> PickerExchange | None:
        """The exchange held under `pick_id` (once), or None."""
        if pick_id is None:
            return None
        entry = self._held.pop(pick_id, None)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        return len(self._held)

    def _expire(self, now: float) -> None:
        """Release the picks held longer than `hold_s` (the oldest come first)."""
        held = self._held
        while held:
            pick_id, (since, exchange) = next(iter(held.items()))
            if now - since < self.hold_s:
                return
            del held[pick_id]
            exchange.abandon()
