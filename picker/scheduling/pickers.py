"""Picker plugins: turn summed scores into a ranked list of endpoints (primary first, then fallbacks).

- `max-score-picker`: highest score first; equal scores are ordered uniformly at random (the distribution of
  "shuffle, then stable sort by score", computed by sampling only the tied groups that reach the top `count`);
- `random-picker`: uniformly random, scores ignored;
- `weighted-random-picker`: random with probability proportional to score (A-Res reservoir keys u^(1/score));
  when every score is 0 it behaves like `random-picker`;
- `round-robin-picker`: cycles through the candidates in pool order, scores ignored.

Every picker draws from the `random.Random` it was built with, so runs are reproducible with a seeded RNG.
`maxNumOfEndpoints` (upstream's parameter, default 1; 0 or less means 1) is how many endpoints the picker returns,
the primary first and then its fallbacks, unless the scheduler is given a number of fallbacks (`--fallbacks`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import Field

from picker.pool.state import Endpoint
from picker.scheduling.framework import CycleState, Picker
from picker.scheduling.registry import BuildContext, PluginParameters, plugin


class PickerParameters(PluginParameters):
    maxNumOfEndpoints: int = Field(default=1, description="endpoints returned, primary first; 0 or less: 1")

    @property
    def max_endpoints(self) -> int:
        """`maxNumOfEndpoints`, with upstream's reading of a value below 1 as 1."""
        return max(self.maxNumOfEndpoints, 1)


class RandomizedPicker(Picker):
    """A picker that draws from the config's `random.Random`."""

    Parameters = PickerParameters

    def __init__(self, name: str = "", *, rng: random.Random, max_endpoints: int = 1) -> None:
        super().__init__(name, max_endpoints)
        self.rng = rng

    @classmethod
    def create(cls, name: str, parameters: PickerParameters, context: BuildContext) -> RandomizedPicker:
        return cls(name, rng=context.rng, max_endpoints=parameters.max_endpoints)


@plugin("max-score-picker")
class MaxScorePicker(RandomizedPicker):
    """Best score first, ties broken uniformly at random."""

    def pick(self, cycle: CycleState, endpoints: Sequence[Endpoint], scores: list[float], count: int) -> list[int]:
        n = len(scores)
        order = sorted(range(n), key=scores.__getitem__, reverse=True)  # stable: ties keep candidate order
        picked: list[int] = []
        start = 0
        while start < n and len(picked) < count:
            tied = scores[order[start]]
            end = start + 1
            while end < n and scores[order[end]] == tied:
                end += 1
            need = count - len(picked)
            group = order[start:end]
            picked.extend(self.rng.sample(group, min(need, len(group))) if len(group) > 1 else group)
            start = end
        return picked


@plugin("random-picker")
class RandomPicker(RandomizedPicker):
    """Uniformly random endpoints, scores ignored."""

    def pick(self, cycle: CycleState, endpoints: Sequence[Endpoint], scores: list[float], count: int) -> list[int]:
        return self.rng.sample(range(len(endpoints)), min(count, len(endpoints)))


@plugin("weighted-random-picker")
class WeightedRandomPicker(RandomizedPicker):
    """Random endpoints with probability proportional to their scores."""

    def pick(self, cycle: CycleState, endpoints: Sequence[Endpoint], scores: list[float], count: int) -> list[int]:
        if not any(score > 0 for score in scores):
            return self.rng.sample(range(len(endpoints)), min(count, len(endpoints)))
        rand = self.rng.random
        keys = [(rand() or 1e-10) ** (1.0 / score) if score > 0 else 0.0 for score in scores]
        return sorted(range(len(keys)), key=keys.__getitem__, reverse=True)[:count]


@plugin("round-robin-picker")
class RoundRobinPicker(Picker):
    """Takes turns over the candidates, in pool order."""

    Parameters = PickerParameters

    def __init__(self, name: str = "", max_endpoints: int = 1) -> None:
        super().__init__(name, max_endpoints)
        self._turn = 0

    @classmethod
    def create(cls, name: str, parameters: PickerParameters, context: BuildContext) -> RoundRobinPicker:
        return cls(name, parameters.max_endpoints)

    def pick(self, cycle: CycleState, endpoints: Sequence[Endpoint], scores: list[float], count: int) -> list[int]:
        n = len(endpoints)
        first = self._turn % n
        self._turn = first + 1
        return [(first + i) % n for i in range(min(count, n))]
