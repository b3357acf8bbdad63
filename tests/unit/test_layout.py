"""The layout shows the pipeline, and no floor imports the floor above it.

Ground: ``onceonly`` (settings, errors, privacy, files), then ``catalog``. Stages, in pipeline
order: ``connectors`` → ``contracts`` → ``evidence`` → ``lake`` → ``sharing``. Roof: ``flows``,
then ``cli``. A package may import only the packages before it in that order — at module level
or inside a function (a lazy import is still a dependency). ``departments`` (the generated demo
systems) stands beside the pipeline: it may use the ground floor and the contracts' identifier
checks, and only the command line uses it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ["onceonly", "catalog", "connectors", "contracts", "evidence", "lake", "sharing", "flows", "cli"]
ALLOWED = {name: set(FLOORS[:i]) for i, name in enumerate(FLOORS)}
ALLOWED["departments"] = {"onceonly", "contracts"}
ALLOWED["cli"] |= {"departments"}
PACKAGES = sorted(ALLOWED)


def imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_floors_below_it(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported, line in sorted(imported_packages(path)):
            if imported in ALLOWED and imported != package and imported not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_every_top_level_package_has_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(ALLOWED)


def test_no_module_has_a_name_that_says_nothing() -> None:
    vague = {"utils", "helpers", "common", "misc", "util"}
    names = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if p.stem in vague]
    assert not names
