"""Profile handler plugins: which scheduling profiles a request runs.

- `single-profile-handler`: the request runs the scheduler's one profile. poolgate runs one profile per
  scheduler, so declaring it changes nothing; it is accepted for upstream configs that list it.
"""

from __future__ import annotations

from picker.scheduling.framework import Plugin
from picker.scheduling.registry import plugin


@plugin("single-profile-handler")
class SingleProfileHandler(Plugin):
    """Runs the scheduler's one profile (no effect: it is poolgate's only way)."""
