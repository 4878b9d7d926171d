"""The subcommands, one module per group of steps. Each module has ``add(sub)``, which adds its
subcommands' parsers (each with its ``cmd_*`` function as ``func``), and ``ORDER``, its place in
``taskvec --help``. Modules are found here by name, so a new group needs no edit elsewhere: each
step's code is only its own module's (taskvec.codedeps), and a new group reruns no other step.

At module level a group imports only the standard library and ``taskvec.commands._common`` (tested),
so that building every parser runs no library code; each ``cmd_*`` imports what it calls.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def groups() -> list[ModuleType]:
    """The subcommand modules of this package, in their ``ORDER``."""
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda module: (module.ORDER, module.__name__))
