"""LoRA adapter slots of one simulated server (vLLM's `max_loras`).

At most `max_loras` distinct adapters can be in the running batch at once. The GPU holds up to `max_loras`
adapters; one that is not resident must be loaded (a cost the engine adds to the step), evicting the least recently
used resident adapter that no running request needs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping


class AdapterSlots:
    """Which adapters are resident on the GPU, and whether another one may join the batch."""

    def __init__(self, max_loras: int) -> None:
        self.max_loras = max_loras
        self._resident: OrderedDict[str, None] = OrderedDict()  # least recently used first

    def can_run(self, adapter: str, running: Mapping[str, int]) -> bool:
        """Whether a request for `adapter` may join a batch whose adapters are `running` (adapter -> requests)."""
        return adapter in running or len(running) < self.max_loras

    def activate(self, adapter: str, running: Mapping[str, int]) -> bool:
        """Make `adapter` resident for a request joining the batch; returns True when it had to be loaded."""
        if adapter in self._resident:
            self._resident.move_to_end(adapter)
            return False
        if len(self._resident) >= self.max_loras:
            victim = next(name for name in self._resident if name not in running)
            del self._resident[victim]
        self._resident[adapter] = None
        return True

    def drop(self, adapter: str) -> None:
        """Forget `adapter` (it was unloaded); its next use loads it again."""
        self._resident.pop(adapter, None)

    def resident(self) -> list[str]:
        """Return the resident adapters, least recently used first."""
        return list(self._resident)
