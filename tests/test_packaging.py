"""A plain `pip install poolgate` (no test extras) runs every subcommand.

The import check walks every module the `poolgate` command can load (its subcommand modules and, transitively, every
first-party module they import, function-local imports included) and requires each third-party import to come from a
runtime dependency declared in pyproject.toml (or one of their own requirements). The CLI check runs each subcommand's
`--help` in a fresh interpreter, and one cheap real run.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from poolgate.bench.cli import BENCHMARKS
from poolgate.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("poolgate", "picker", "hooks", "simulator")


def module_file(name: str) -> Path | None:
    """The source file of a first-party module, None for a name that is not a module (e.g. an imported function)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def imports_of(path: Path, package: str) -> set[str]:
    """Absolute module names imported anywhere in a file (relative imports resolved against `package`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def third_party_imports(roots: list[str]) -> dict[str, str]:
    """Top-level third-party module -> the first-party module that imports it, over everything reachable from roots."""
    seen: set[str] = set()
    pending = list(roots)
    found: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run on import too
        for imported in imports_of(path, package):
            top = imported.partition(".")[0]
            if top in FIRST_PARTY:
                pending.append(imported)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, name)
    return found


def runtime_distributions() -> set[str]:
    """The runtime dependencies declared in pyproject.toml and, recursively, their own non-extra requirements."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pending = [canonicalize_name(Requirement(text).name) for text in declared]
    closure: set[str] = set()
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = importlib.metadata.requires(name) or ()
        except importlib.metadata.PackageNotFoundError:  # not installed here: its own requirements are unknown
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return closure


def command_modules() -> list[str]:
    """The console script's module and every subcommand and benchmark module it loads."""
    return ["poolgate.cli", *(m for m, _ in SUBCOMMANDS.values()), *(m for m, _ in BENCHMARKS.values())]


def test_every_cli_import_is_a_runtime_dependency():
    providers = importlib.metadata.packages_distributions()
    runtime = runtime_distributions()
    imports = third_party_imports(command_modules())
    assert {"grpc", "yaml", "aiohttp", "envoy"} <= set(imports)  # the walk reaches the picker, translator and loadgen
    missing = {
        top: (importer, providers.get(top))
        for top, importer in imports.items()
        if not any(canonicalize_name(d) in runtime for d in providers.get(top, ()))
    }
    assert missing == {}, "imported by the CLI but not installed by a plain `pip install poolgate`"


def test_the_walk_sees_a_function_local_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import httpx\n    from .sibling import x\n")
    assert imports_of(sample, "poolgate.bench") >= {"httpx", "poolgate.bench.sibling", "poolgate.bench.sibling.x"}


def poolgate(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the poolgate command in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "poolgate.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_every_subcommand_prints_its_help():
    commands = [[name] for name in SUBCOMMANDS] + [["bench", name] for name in BENCHMARKS]
    for command in commands:
        result = poolgate(*command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith("usage: poolgate " + " ".join(command)), (command, result.stdout[:200])


def test_translate_runs_on_the_quickstart(tmp_path):
    result = poolgate("translate", "-f", str(REPO / "examples" / "quickstart.yaml"), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written, "translate wrote nothing"
    for path in tmp_path.glob("*.json"):
        json.loads(path.read_text())  # each JSON file is complete


def test_the_help_names_every_benchmark_and_every_hook():
    from hooks.app import HOOKS
    from hooks.cli import DESCRIPTION

    assert [name for name in BENCHMARKS if name not in SUBCOMMANDS["bench"][1]] == []
    assert [path for path in HOOKS if f"POST {path}\n" not in DESCRIPTION and f"POST {path} " not in DESCRIPTION] == []
