"""Golden in/out tests of each translation stage, on readable cases (tests/translate/golden/<case>/input.yaml):
resolved graph -> status.json, graph -> ir.json, IR -> bootstrap.yaml (and Envoy accepts it).

The expected files are reviewed by hand. After an intended change, regenerate them with
`POOLGATE_UPDATE_GOLDEN=1 pytest tests/translate/test_golden.py` and review the diff."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from poolgate.api import load_files
from poolgate.translate import StatusOptions, translate
from poolgate.translate.output import to_yaml

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())
UPDATE = os.environ.get("POOLGATE_UPDATE_GOLDEN") == "1"
NOW = "2026-01-01T00:00:00Z"


def check(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"{path} is missing: run with POOLGATE_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(), f"{path} differs: if the change is intended, regenerate and review"


@pytest.mark.parametrize("case", CASES)
def test_stages_match_golden(case, envoy_validate):
    translation = translate(load_files([GOLDEN / case / "input.yaml"]))
    check(GOLDEN / case / "status.json", json.dumps(translation.status(StatusOptions(now=NOW)), indent=2) + "\n")
    ir = {
        "listeners": [dataclasses.asdict(lst) for lst in translation.ir.listeners],
        "clusters": {name: dataclasses.asdict(c) for name, c in sorted(translation.ir.clusters.items())},
    }
    check(GOLDEN / case / "ir.json", json.dumps(ir, indent=2) + "\n")
    bootstrap = translation.bootstrap()
    check(GOLDEN / case / "bootstrap.yaml", to_yaml(bootstrap))
    envoy_validate(bootstrap)


def test_every_case_has_its_outputs():
    assert len(CASES) >= 4
    for case in CASES:
        assert {p.name for p in (GOLDEN / case).iterdir()} >= {"input.yaml", "status.json", "ir.json", "bootstrap.yaml"}
