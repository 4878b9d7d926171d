"""The library files a CLI step runs, computed from the source: the import closure of the
subcommand's own imports (with ``cli.py`` and every package ``__init__.py`` on the way), and the data
files that ship beside those modules.

Snakemake reruns a job when its inputs change, not when the code its command runs does; so each
rule's code inputs come from here (``workflow/rules/common.smk``), never from a hand-written list.
Imports inside function bodies count too: a module whose function imports another runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "taskvec"
SOURCE = Path(__file__).resolve().parent  # this installation's taskvec sources


class _Sources:
    """The taskvec sources under one directory (a project's own ``src/taskvec``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.imports: dict[str, frozenset[str]] = {}

    def file(self, name: str) -> Path | None:
        """The source file of module ``name`` (a package's ``__init__.py``), or None."""
        parts = name.split(".")
        if parts[0] != PACKAGE:
            return None
        base = self.root.joinpath(*parts[1:])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def imported(self, node: ast.AST, package: str) -> set[str]:
        """The taskvec modules imported anywhere under ``node``."""
        names: set[str] = set()
        for item in ast.walk(node):
            if isinstance(item, ast.Import):
                names.update(alias.name for alias in item.names)
            elif isinstance(item, ast.ImportFrom):
                if item.level:
                    parts = package.split(".")
                    module = ".".join(parts[: len(parts) - item.level + 1] + ([item.module] if item.module else []))
                else:
                    module = item.module or ""
                names.add(module)
                # `from taskvec.report import figures` imports the module taskvec.report.figures
                names.update(f"{module}.{alias.name}" for alias in item.names)
        return {n for n in names if self.file(n) is not None}

    def module_imports(self, name: str) -> frozenset[str]:
        if name not in self.imports:
            path = self.file(name)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            self.imports[name] = frozenset(self.imported(ast.parse(path.read_text(encoding="utf-8")), package))
        return self.imports[name]

    def closure(self, modules: list[str]) -> set[Path]:
        seen: set[str] = set()
        todo = [parent for name in modules for parent in _with_parents(name)]
        while todo:
            name = todo.pop()
            if name in seen or self.file(name) is None:
                continue
            seen.add(name)
            todo.extend(parent for imported in self.module_imports(name) for parent in _with_parents(imported))
        files = {self.file(name) for name in seen}
        packages = {f.parent for f in files if f.name == "__init__.py"}
        return files | {f for p in packages for f in p.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc")}


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(modules: list[str], root: Path = SOURCE) -> list[Path]:
    """Source files of ``modules`` and of everything they import, transitively, with each package's
    ``__init__.py`` and the package data beside them (e.g. ``report/paper_results.csv``)."""
    return sorted(_Sources(root).closure(modules))


def _top_level_imports(tree: ast.Module) -> ast.Module:
    return ast.Module(
        body=[node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)], type_ignores=[]
    )


def command_files(subcommand: str, root: Path = SOURCE) -> list[Path]:
    """The files that ``taskvec <subcommand>`` runs: ``cli.py``, the ``taskvec.commands`` module that
    defines the subcommand's ``cmd_*`` function, the closure of both modules' module-level imports, and
    the closure of what that function imports (not the other subcommands'). The other groups' modules,
    imported only to build their parsers, run no library code (they import only the standard library
    and ``taskvec.commands._common`` at module level; tested)."""
    sources = _Sources(root)
    root = Path(root)
    name = "cmd_" + subcommand.replace("-", "_")
    for path in sorted((root / "commands").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        function = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name), None)
        if function is not None:
            break
    else:
        raise ValueError(f"taskvec has no subcommand {subcommand!r} (no {name} in {root / 'commands'})")
    cli = root / "cli.py"
    package = f"{PACKAGE}.commands"
    imported = (
        sources.imported(_top_level_imports(ast.parse(cli.read_text(encoding="utf-8"))), PACKAGE)
        | sources.imported(_top_level_imports(tree), package)
        | sources.imported(function, package)
    )
    return sorted({cli, path} | sources.closure([PACKAGE, package, *sorted(imported)]))
