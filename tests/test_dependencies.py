"""Dependencies point inward: ``events`` knows nothing of the layers above it, and
``projections`` nothing of streams or consumers (ARCHITECTURE.md, STYLE.md §1)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "events": {"projections", "streams", "consumers", "bench", "faust", "kafka", "aiokafka", "fastapi"},
    "projections": {"streams", "consumers", "bench", "faust", "kafka", "aiokafka", "fastapi", "sqlite3"},
}
MODULES = [(package, path) for package in FORBIDDEN for path in sorted((ROOT / package).rglob("*.py"))]


def imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_dependency_rule__covers_every_module_of_both_inner_layers():
    assert {package for package, _ in MODULES} == set(FORBIDDEN)
    assert len(MODULES) > 20


@pytest.mark.parametrize("package,path", MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES])
def test_dependency_rule__an_inner_module_imports_nothing_from_outer_layers(package, path):
    imported = imported_roots(path.read_text())

    assert not imported & FORBIDDEN[package], f"{path.relative_to(ROOT)} imports {imported & FORBIDDEN[package]}"
