"""The library files a CLI step runs, computed from the source: the closure of the function its
subcommand runs, followed through the calls and names each function uses, with the package data
files that ship beside the modules reached.

Snakemake reruns a job when its inputs change, not when the code its command runs does; so each
rule's code inputs come from here (``workflow/rules/common.smk``), never from a hand-written list.

The unit is a top-level function or class (a class with all its methods). Reaching one runs its
module's top level (imports, constants, decorators) and every package ``__init__`` above it; the
imports inside a function count when that function is reached, not when only its module is
imported. So a step that uses one helper of a module depends on that helper's own imports, not on
what the module's other functions import (``taskvec.commands._common`` imports the prompt code for
the steps that sample prompts, not for the model conversion). Imports under ``if TYPE_CHECKING:``
and annotations run nothing and count for nothing. Files are the granularity Snakemake sees: a step
depends on a whole file as soon as any of it runs, so code that one step runs and another must not
lives in modules of its own (extraction's and patching's hooks, the scoring rules).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from taskvec.errors import ConfigError

PACKAGE = "taskvec"
# functions that import modules of their package by discovery, which no import statement shows: the
# modules they import (a glob under the package's folder) and the functions of those modules that are
# then called by name (none: only what importing them runs). The method registry finds each method's
# module; the study registry each study's declaration, and each study's report module, whose skeleton
# functions (taskvec.studies.base) the extended report calls
DISCOVERING = {
    ("taskvec.methods", "registry"): ("[!_]*.py", ()),
    ("taskvec.studies", "registry"): ("*/__init__.py", ()),
    ("taskvec.studies", "report_module"): ("*/report.py", ("read", "metrics", "section", "headline")),
}
SOURCE = Path(__file__).resolve().parent  # this installation's taskvec sources


@dataclasses.dataclass
class _Module:
    """One parsed module: its top-level definitions and what its names are bound to."""

    name: str
    path: Path
    definitions: dict[str, ast.AST]  # top-level functions and classes
    body: list[ast.AST]  # what runs at import, definitions reduced to their decorators and defaults
    bindings: dict[str, tuple[str, str | None]]  # top-level name -> (module, attribute or None)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and getattr(test, "id", getattr(test, "attr", "")) == (
        "TYPE_CHECKING"
    )


def _runs_at_definition(node: ast.AST) -> list[ast.AST]:
    """What a ``def`` or ``class`` statement evaluates when it runs: decorators, defaults, bases."""
    parts: list[ast.AST] = list(node.decorator_list)
    if isinstance(node, ast.ClassDef):
        return parts + list(node.bases) + [k.value for k in node.keywords]
    return parts + [d for d in node.args.defaults + node.args.kw_defaults if d is not None]


def _without_annotations(node: ast.AST) -> ast.AST:
    """``node`` with its annotations removed, in place (``from __future__ import annotations`` leaves
    them unevaluated, so they run nothing)."""

    class Strip(ast.NodeTransformer):
        def visit_arg(self, arg: ast.arg) -> ast.arg:
            arg.annotation = None
            return arg

        def visit_FunctionDef(self, function: ast.FunctionDef) -> ast.FunctionDef:
            function.returns = None
            self.generic_visit(function)
            return function

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_AnnAssign(self, assign: ast.AnnAssign) -> ast.AST | None:
            if assign.value is None:
                return None
            return ast.Assign(targets=[assign.target], value=self.visit(assign.value), lineno=assign.lineno)

        def visit_If(self, branch: ast.If) -> ast.AST | None:
            return None if _is_type_checking(branch) else self.generic_visit(branch)

    return Strip().visit(node)


class Sources:
    """The taskvec sources under one directory (a project's own ``src/taskvec``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.modules: dict[str, _Module | None] = {}

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

    def module(self, name: str) -> _Module | None:
        if name not in self.modules:
            path = self.file(name)
            self.modules[name] = None if path is None else self._parse(name, path)
        return self.modules[name]

    def _parse(self, name: str, path: Path) -> _Module:
        tree = _without_annotations(ast.parse(path.read_text(encoding="utf-8")))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        definitions, body = {}, []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                definitions[node.name] = node
                body.extend(_runs_at_definition(node))
            else:
                body.append(node)
        module = _Module(name, path, definitions, body, {})
        for node in body:
            module.bindings.update(self._bindings(node, package))
        return module

    def _bindings(self, node: ast.AST, package: str) -> dict[str, tuple[str, str | None]]:
        """Names bound by the taskvec imports anywhere under ``node``: name -> (module, attribute)."""
        bound: dict[str, tuple[str, str | None]] = {}
        for item in ast.walk(node):
            if isinstance(item, ast.Import):
                for alias in item.names:
                    if alias.asname:
                        bound[alias.asname] = (alias.name, None)
                    else:  # `import taskvec.x` binds `taskvec`
                        bound[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
            elif isinstance(item, ast.ImportFrom):
                if item.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - item.level + 1] + ([item.module] if item.module else []))
                else:
                    base = item.module or ""
                for alias in item.names:
                    submodule = f"{base}.{alias.name}"
                    target = (submodule, None) if self.file(submodule) else (base, alias.name)
                    bound[alias.asname or alias.name] = target
        return {name: target for name, target in bound.items() if self.file(target[0]) is not None}

    def _imported_modules(self, node: ast.AST, package: str) -> set[str]:
        """The taskvec modules that the import statements under ``node`` run."""
        return {module for module, _ in self._bindings(node, package).values()} | {
            alias.name
            for item in ast.walk(node)
            if isinstance(item, ast.Import)
            for alias in item.names
            if self.file(alias.name)
        }

    def _uses(self, module: _Module, nodes: list[ast.AST], local: dict[str, tuple[str, str | None]]):
        """The (module, definition) units that ``nodes`` refer to, and the modules they import."""
        package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
        bindings = {**module.bindings, **local}
        units: set[tuple[str, str | None]] = set()
        modules: set[str] = set()
        for node in nodes:
            modules |= self._imported_modules(node, package)
            for item in ast.walk(node):
                if isinstance(item, ast.Attribute):
                    chain, base = [item.attr], item.value
                    while isinstance(base, ast.Attribute):
                        chain.append(base.attr)
                        base = base.value
                    if isinstance(base, ast.Name) and base.id in bindings and bindings[base.id][1] is None:
                        # `store.write_parquet`, `taskvec.report.figures.save`: the longest module prefix
                        target = bindings[base.id][0]
                        for attr in reversed(chain):
                            if self.file(f"{target}.{attr}") is None:
                                units.add((target, attr))
                                break
                            target = f"{target}.{attr}"
                            modules.add(target)
                elif isinstance(item, ast.Name):
                    if item.id in module.definitions:
                        units.add((module.name, item.id))
                    elif item.id in bindings:
                        units.add(bindings[item.id])
        return units, modules

    def closure(
        self, units: list[tuple[str, str | None]], exclude: frozenset[tuple[str, str]] = frozenset()
    ) -> set[Path]:
        """Files of the given units (``(module, name)``; name None: the module's top level) and of
        everything they use, transitively, except the ``exclude`` units, with the package data
        beside them."""
        seen: set[tuple[str, str | None]] = set()
        todo = list(units)
        while todo:
            unit = todo.pop()
            if unit in seen or unit in exclude:
                continue
            name, attr = unit
            module = self.module(name)
            if module is None:
                continue
            seen.add(unit)
            parts = name.split(".")
            todo.extend((".".join(parts[:i]), None) for i in range(1, len(parts) + 1))
            if attr is None:
                used, imported = self._uses(module, module.body, {})
            elif attr in module.definitions:
                definition = module.definitions[attr]
                package = name if module.path.name == "__init__.py" else name.rpartition(".")[0]
                used, imported = self._uses(module, [definition], self._bindings(definition, package))
            elif attr in module.bindings:  # a name the module imports and re-exports
                used, imported = {module.bindings[attr]}, set()
            else:  # a constant of the module's top level
                used, imported = set(), set()
            todo.extend(used)
            todo.extend((m, None) for m in imported)
            if unit in DISCOVERING:
                pattern, called = DISCOVERING[unit]
                for path in sorted(module.path.parent.glob(pattern)):
                    parts = path.relative_to(module.path.parent).with_suffix("").parts
                    found = ".".join([name, *(p for p in parts if p != "__init__")])
                    todo.extend([(found, None), *((found, function) for function in called)])
        files = {self.module(name).path for name, _ in seen}
        packages = {f.parent for f in files if f.name == "__init__.py"}
        return files | {f for p in packages for f in p.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc")}


def closure(
    units: list[tuple[str, str | None]], root: Path = SOURCE, exclude: frozenset[tuple[str, str]] = frozenset()
) -> list[Path]:
    """Source files of ``units`` (``(module, function or class)``, or ``(module, None)`` for what
    importing the module runs) and of everything they use, transitively, with each package's
    ``__init__.py`` and the package data beside them (e.g. ``report/paper_results.csv``)."""
    return sorted(Sources(root).closure(units, exclude))


def _study_step(subcommand: str, root: Path) -> tuple[str, str] | None:
    """The declaration's module and the step's entry ("module:function") of the extended study whose
    subcommand this is (``taskvec.studies``: each folder's ``STUDY``, read from its source), or None."""
    for path in sorted((root / "studies").glob("*/__init__.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Study":
                keywords = {k.arg: k.value for k in node.keywords if isinstance(k.value, ast.Constant)}
                if "command" in keywords and keywords["command"].value == subcommand:
                    return f"{PACKAGE}.studies.{path.parent.name}", keywords["entry"].value
    return None


def command_files(subcommand: str, root: Path = SOURCE) -> list[Path]:
    """The files that ``taskvec <subcommand>`` runs: the CLI's entry point and parser, the
    ``taskvec.commands`` module that defines the subcommand's ``cmd_*`` function with its ``add``
    (the parsers), and the closure of that function. The other groups' modules, imported only to
    build their parsers, run no library code (they import only the standard library and
    ``taskvec.commands._common`` at module level; tested)."""
    root = Path(root)
    study = _study_step(subcommand, root)
    if study is not None:  # an extended study's step: the skeleton, the study's declaration and its entry
        group = f"{PACKAGE}.commands.studies"
        declaration, entry = study
        module, _, function = entry.partition(":")
        units = [
            (f"{PACKAGE}.cli", "main"),
            (group, "add"),
            (group, "cmd_study"),
            (declaration, None),
            (module, function),
        ]
        # building the other studies' parsers runs their declarations only (data; tested)
        return closure(units, root, frozenset({(f"{PACKAGE}.studies", "registry")}))
    name = "cmd_" + subcommand.replace("-", "_")
    for path in sorted((root / "commands").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        commands = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("cmd_")}
        if name in commands:
            break
    else:
        raise ConfigError(f"taskvec has no subcommand {subcommand!r} (no {name} in {root / 'commands'})")
    group = f"{PACKAGE}.commands.{path.stem}"
    # `add` names every subcommand's function of the group (`set_defaults(func=...)`); only this one runs
    others = frozenset((group, other) for other in commands - {name})
    return closure([(f"{PACKAGE}.cli", "main"), (group, "add"), (group, name)], root, others)
