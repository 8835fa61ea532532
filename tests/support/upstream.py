"""The upstream endpoint picker's published configs (../shared/reference/epp-configs), data for drop-in tests."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def _find_upstream_configs() -> Path:
    for candidate in (
        os.environ.get("POOLGATE_REFERENCE_EPP_CONFIGS"),
        REPO.parent / "shared" / "reference" / "epp-configs",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise RuntimeError("upstream picker configs not found: set POOLGATE_REFERENCE_EPP_CONFIGS to reference/epp-configs")


UPSTREAM_CONFIGS = _find_upstream_configs()
# every published config, as (label, path): e.g. ("llm-d-router-v0.10/pd-epp-config.yaml", Path(...))
UPSTREAM_CONFIG_FILES = [
    (str(path.relative_to(UPSTREAM_CONFIGS)), path) for path in sorted(UPSTREAM_CONFIGS.glob("*/*.yaml"))
]
