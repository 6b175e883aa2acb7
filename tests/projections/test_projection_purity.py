"""``projections/`` is pure: it imports only ``events``, itself, orjson (numpy in
``attribution/`` and ``aggregates/``) and pure parts of the standard library, and never reads the clock,
draws ids, logs, does I/O or switches the process's garbage collector (the
application's shells pause it around bulk work)."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "projections"
MODULES = sorted(PACKAGE.rglob("*.py"))
ALLOWED_THIRD_PARTY = {"orjson", "events", "projections"}
ATTRIBUTION_THIRD_PARTY = {"numpy"}
NUMERIC_PACKAGES = {"attribution", "aggregates"}  # the packages that may compute with numpy
FORBIDDEN_STDLIB = {
    "os", "io", "socket", "logging", "random", "time", "uuid", "sqlite3", "subprocess", "pathlib", "threading",
    "gc",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "uuid4", "open", "print", "time", "perf_counter"}


def imported_roots(tree: ast.Module) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


IDS = [str(p.relative_to(PACKAGE)) for p in MODULES]


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_purity__a_projection_module_imports_only_events_orjson_and_pure_stdlib(path):
    roots = imported_roots(ast.parse(path.read_text()))
    allowed = ALLOWED_THIRD_PARTY | (ATTRIBUTION_THIRD_PARTY if path.parent.name in NUMERIC_PACKAGES else set())

    third_party = {r for r in roots if r not in sys.stdlib_module_names}
    assert third_party <= allowed, f"{path.name} imports {third_party - allowed}"
    assert not roots & FORBIDDEN_STDLIB, f"{path.name} imports {roots & FORBIDDEN_STDLIB}"


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_purity__a_projection_module_reads_no_clock_and_draws_no_ids(path):
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
    }

    assert not calls & FORBIDDEN_CALLS, f"{path.name} calls {calls & FORBIDDEN_CALLS}"


@pytest.mark.parametrize("name", ["journey", "identity", "population"])
def test_purity__a_fold_exports_its_state_initial_state_evolve_handles_and_version(name):
    module = importlib.import_module(f"projections.{name}")

    assert isinstance(module.State, type) and callable(module.initial_state) and callable(module.evolve)
    assert isinstance(module.HANDLES, frozenset) and isinstance(module.VERSION, int)
