"""The two clocks a simulated server can run on: the asyncio wall clock and a discrete-event virtual clock.

Both offer the same three calls, which is all the engine model uses:
`now()` (seconds, monotonic), `timestamp()` (seconds since the Unix epoch, for metric values) and
`call_at(when, callback, *args)`, which returns a handle with `cancel()`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle(Protocol):
    """What `call_at` returns: something that can be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The time source and timer service of a simulated server."""

    def now(self) -> float: ...

    def timestamp(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle: ...


class WallClock:
    """Real time on the running asyncio loop (use it from inside the loop)."""

    def now(self) -> float:
        """Return the loop's monotonic time in seconds."""
        return asyncio.get_running_loop().time()

    def timestamp(self) -> float:
        """Return the current Unix time in seconds."""
        return time.time()

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        """Run `callback(*args)` on the loop at loop time `when`."""
        return asyncio.get_running_loop().call_at(when, callback, *args)


class VirtualTimer:
    """A pending virtual-clock callback; `cancel()` drops it."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Prevent the callback from running."""
        self.cancelled = True


class VirtualClock:
    """Discrete-event time: callbacks run in (time, scheduling order) without sleeping.

    `epoch` is the Unix time that virtual time 0 stands for; it only shows in `timestamp()`.
    """

    def __init__(self, start: float = 0.0, epoch: float = 0.0) -> None:
        self._now = start
        self._epoch = epoch
        self._queue: list[tuple[float, int, VirtualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """Return the current virtual time in seconds."""
        return self._now

    def timestamp(self) -> float:
        """Return the Unix time that the current virtual time stands for."""
        return self._epoch + self._now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> VirtualTimer:
        """Schedule `callback(*args)` at virtual time `when` (a time in the past means: as soon as possible)."""
        timer = VirtualTimer(max(when, self._now), callback, args)
        heapq.heappush(self._queue, (timer.when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> VirtualTimer:
        """Schedule `callback(*args)` `delay` seconds from now."""
        return self.call_at(self._now + delay, callback, *args)

    def pending(self) -> int:
        """Return how many callbacks are scheduled and not cancelled."""
        return sum(1 for _, _, timer in self._queue if not timer.cancelled)

    def run_until(self, until: float) -> None:
        """Run every callback due at or before `until`, then leave the clock at `until`."""
        self._run(until)
        self._now = max(self._now, until)

    def run_until_idle(self) -> None:
        """Run callbacks until none is left (the clock stops at the last one's time)."""
        self._run(float("inf"))

    def _run(self, until: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until:
            when, _, timer = heapq.heappop(queue)
            if timer.cancelled:
                continue
            self._now = when
            timer.callback(*timer.args)
