"""Writing Envoy configuration to disk: YAML files, and atomic swaps of a watched directory for hot reload."""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import yaml

try:  # libyaml's emitter when PyYAML has it (about 8x faster on large configurations), else the Python one
    from yaml import CSafeDumper as _BaseDumper
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]  # the same interface, another class


class _Dumper(_BaseDumper):
    """The emitter, with OrderedDicts written as plain mappings."""


_Dumper.add_representer(OrderedDict, lambda dumper, data: dumper.represent_dict(data.items()))


def to_yaml(data: object) -> str:
    """YAML text of a JSON-like object, keys in their given order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def write_yaml(path: str | Path, data: object) -> None:
    """Write a YAML file atomically (write to a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(to_yaml(data))
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def swap_directory(watched: str | Path, files: Mapping[str, object]) -> None:
    """Publish new contents of `files` in `watched` the way a Kubernetes ConfigMap volume does: the files are
    symlinks into `..data`, itself a symlink to a fresh directory that is replaced by one atomic rename, so Envoy's
    watched_directory sees one move event and reads a consistent set."""
    watched = Path(watched)
    watched.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(dir=watched, prefix="..version-"))
    fresh.chmod(0o755)
    for name, data in files.items():
        (fresh / name).write_text(to_yaml(data))
    link = watched / "..data_tmp"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(fresh.name)
    previous = os.readlink(watched / "..data") if (watched / "..data").is_symlink() else None
    os.replace(link, watched / "..data")
    for name in files:
        target = watched / name
        if not target.is_symlink():
            target.unlink(missing_ok=True)
            target.symlink_to(Path("..data") / name)
    if previous and previous != fresh.name:
        for leftover in (watched / previous).glob("*"):
            leftover.unlink()
        (watched / previous).rmdir()
