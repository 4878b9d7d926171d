"""The package's shape, checked on its source: no import cycle (imports inside functions count: a
function-level import hides a cycle, it does not remove it), no private name of one module imported
by another (a boundary drawn in the wrong place), and no module too long to hold one concern."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SOURCE = ROOT / "src" / "taskvec"
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every taskvec import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.append((f"{base}.{alias.name}", None))
                elif base in modules:
                    found.append((base, alias.name))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _is_ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_no_import_cycle_in_the_package():
    modules = _modules()
    # a module importing its own package's __init__ (or a submodule importing a sibling through it)
    # is how packages work, not a cycle between concerns
    # is how packages work, not a cycle between concerns; but importing a module of another package runs
    # that package's __init__ first, so that import reaches the __init__ too
    graph = {
        name: {
            reached
            for target, _ in _imports(name, path, modules)
            for reached in (target, *_packages_above(target, modules))
            if not _is_ancestor(reached, name)
        }
        - {name}
        for name, path in modules.items()
    }
    assert _cycles(graph) == []


def _packages_above(module: str, modules: dict[str, Path]) -> list[str]:
    parts = module.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(2, len(parts))) if p in modules]


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    crossings = sorted(
        f"{name} imports {target}.{imported}"
        for name, path in modules.items()
        for target, imported in _imports(name, path, modules)
        if imported and imported.startswith("_") and not imported.startswith("__") and target != name
    )
    assert crossings == []


def test_no_module_is_longer_than_one_concern_needs():
    long = {
        str(path.relative_to(SOURCE)): n
        for path in SOURCE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_checks_find_what_they_look_for():
    """The cycle search finds a cycle through three modules and none in a chain."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
