"""The seams between poolgate's parts, checked on the source: who may import whom, and where shared names live.

- the picker does not depend on the translator (both share `poolgate.api`, the contract and pool membership);
- benchmarks are a leaf: no product module and no e2e test imports `poolgate.bench`;
- the product does not import the test harness;
- every name of `poolgate.api.contract` is defined there only (no module-level copy of its value elsewhere);
- the newcomer's map (docs/architecture.md, "Where things live") names every package and module, and only those.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from poolgate.api import contract

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("poolgate", "picker", "hooks", "simulator")


def python_files(*tops: str) -> list[Path]:
    """Every .py file under the given top-level directories of the repository."""
    return sorted(path for top in tops for path in (REPO / top).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """The modules a file imports (absolute names; `from a import b` counts as `a` and `a.b`)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def violations(files: list[Path], forbidden: str) -> list[str]:
    """`file: module` for each import of `forbidden` (or a submodule of it) among the files."""
    return [
        f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {module}"
        for path in files
        for module in sorted(imported_modules(path))
        if module == forbidden or module.startswith(forbidden + ".")
    ]


def test_the_picker_does_not_import_the_translator():
    assert violations(python_files("picker"), "poolgate.translate") == []


def test_no_product_module_imports_the_benchmarks():
    product = [p for p in python_files(*PRODUCT) if not p.is_relative_to(REPO / "poolgate" / "bench")]
    assert violations(product, "poolgate.bench") == []


def test_e2e_tests_do_not_import_the_benchmarks():
    assert violations(python_files("e2e"), "poolgate.bench") == []


def test_the_product_does_not_import_the_test_harness():
    assert violations(python_files(*PRODUCT), "tests") == []
    assert violations(python_files(*PRODUCT), "e2e") == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from poolgate.translate.naming import dns_label\nimport poolgate.bench.loadgen\n")
    assert f"{sample}: poolgate.translate.naming" in violations([sample], "poolgate.translate")
    assert violations([sample], "poolgate.bench") == [f"{sample}: poolgate.bench.loadgen"]
    assert violations([sample], "poolgate.api") == []


def contract_values() -> dict[str, str]:
    """Each string value of the contract module -> its name there."""
    return {value: name for name, value in vars(contract).items() if name.isupper() and isinstance(value, str)}


def test_contract_names_are_defined_once():
    values = contract_values()
    copies = []
    for path in python_files(*PRODUCT, "tests", "e2e"):
        if path == Path(contract.__file__).resolve():
            continue
        for node in ast.parse(path.read_text(), str(path)).body:
            value = getattr(node, "value", None)
            if (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and isinstance(value, ast.Constant)
                and value.value in values
            ):
                copies.append(f"{path.relative_to(REPO)}:{node.lineno} copies {values[value.value]}")
    assert copies == []


def test_the_map_names_every_package_and_module_and_only_those():
    text = (REPO / "docs" / "architecture.md").read_text()
    where = text[text.index("## Where things live") :]
    named = set(re.findall(r"`([\w/]+(?:\.py|/))`", where))
    files = [path.relative_to(REPO) for path in python_files(*PRODUCT)]
    packages = {f"{path.parent}/" for path in files if path.name == "__init__.py"}
    unnamed_packages = [p for p in packages if not any(p == n or p.endswith(f"/{n}") for n in named)]
    modules = {path.name for path in files if path.name != "__init__.py"}
    named_modules = {n.rsplit("/", 1)[-1] for n in named if n.endswith(".py")}
    assert sorted(unnamed_packages) == [] and sorted(modules - named_modules) == []
    elsewhere = {path.name for path in python_files("examples", "tests", "e2e")}
    assert sorted(named_modules - modules - elsewhere) == []
