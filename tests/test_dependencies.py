"""Dependencies point inward, and nothing imports in a circle (ARCHITECTURE.md, STYLE.md §1).

The layers, inner to outer: ``events`` ← ``projections`` ← ``application`` ← the shells,
``streams`` (Kafka, Faust) and ``consumers`` (HTTP, CLI, dashboard, the supervisor).
``streams`` never imports ``consumers``. Inside ``events`` the port knows no adapter:
only ``events/factory.py``, which chooses one by URL, imports ``events.sqlite`` or
``events.kurrentdb``, and neither adapter imports the other. Every import counts,
including those inside functions: a lazy import is still an arrow. For cycles only, an
import under ``if TYPE_CHECKING:`` is left out: it never runs, it names a type for the
checker (which resolves such cycles), as ``events/kurrentdb/reading.py`` names its store.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["events", "projections", "application", "streams", "consumers"]
FRAMEWORKS = {"faust", "kafka", "aiokafka", "fastapi", "starlette", "uvicorn", "mode"}
FORBIDDEN = {
    "events": {"projections", "application", "streams", "consumers", "bench", *FRAMEWORKS},
    "projections": {"application", "streams", "consumers", "bench", "sqlite3", *FRAMEWORKS},
    "application": {"streams", "consumers", "bench", *FRAMEWORKS},
    "streams": {"consumers", "bench", "fastapi", "starlette", "uvicorn"},
    "consumers": {"bench"},
}
ADAPTERS = {"events.sqlite", "events.kurrentdb"}
ADAPTER_CHOOSER = "events.factory"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py"))}


def imported_names(path: Path, *, at_run_time_only: bool = False) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file (``from a import b``
    also names ``a.b``, which may be a module); ``at_run_time_only`` leaves out the imports
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped = set()
    if at_run_time_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
                skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def owning_module(name: str) -> str | None:
    """The project module ``name`` is, or is inside (``events.sqlite.store.X`` → ``events.sqlite.store``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(*, at_run_time_only: bool = False) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        targets = {owning_module(imported) for imported in imported_names(path, at_run_time_only=at_run_time_only)}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def layer_of(name: str) -> str:
    return name.split(".")[0]


def adapter_of(name: str) -> str | None:
    return next((adapter for adapter in ADAPTERS if name == adapter or name.startswith(adapter + ".")), None)


def test_dependency_rule__covers_every_module_of_every_layer():
    assert {layer_of(name) for name in MODULES} == set(LAYERS)
    assert len(MODULES) > 80


@pytest.mark.parametrize("name", sorted(MODULES))
def test_dependency_rule__a_module_imports_nothing_from_an_outer_layer(name):
    roots = {imported.split(".")[0] for imported in imported_names(MODULES[name])}

    outward = roots & FORBIDDEN[layer_of(name)]
    assert not outward, f"{name} imports {sorted(outward)}"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if layer_of(name) == "events"))
def test_dependency_rule__the_port_imports_no_adapter_and_no_adapter_another(name):
    own = adapter_of(name)
    reached = {adapter_of(target) for target in import_graph()[name]} - {None, own}

    if name == ADAPTER_CHOOSER:
        assert reached == ADAPTERS
    else:
        assert not reached, f"{name} imports the adapter(s) {sorted(reached)}"


def test_dependency_rule__no_module_imports_itself_in_a_circle():
    assert cycles(import_graph(at_run_time_only=True)) == []


def test_dependency_rule__the_cycle_finder_finds_a_circle_of_three():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
