"""Reading and (with POOLGATE_UPDATE_GOLDEN=1) rewriting the golden fixtures under tests/hooks/fixtures/."""

from __future__ import annotations

import json
import os
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UPDATE = os.environ.get("POOLGATE_UPDATE_GOLDEN") == "1"


def hook_path(case: str) -> str:
    """The URL path a case's request goes to: `gateways/sync/x` -> `/gateways/sync`, `envoy-gateway/gateways/sync/x`
    -> `/envoy-gateway/gateways/sync`."""
    parts = case.split("/")
    return "/" + "/".join(parts[:3] if parts[0] == "envoy-gateway" else parts[:2])


def request_file(case: str) -> Path:
    return FIXTURES / f"{case}.json"


def expected_file(case: str) -> Path:
    return FIXTURES / f"{case}.expected.json"


def dump(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def committed_cases() -> list[str]:
    """Every committed request fixture, as `<controller>/<hook>/<case>`."""
    return sorted(
        str(p.relative_to(FIXTURES).with_suffix(""))
        for p in FIXTURES.rglob("*.json")
        if not p.name.endswith(".expected.json")
    )


def check_or_update(path: Path, data: object) -> None:
    """Assert the file holds `data` (as formatted by `dump`), or rewrite it in update mode."""
    text = dump(data)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run with POOLGATE_UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text()) == data, (
        f"{path} differs from what the hooks answer now; if the change is intended, rerun with "
        "POOLGATE_UPDATE_GOLDEN=1 (serially: -p no:xdist) and review the diff"
    )
