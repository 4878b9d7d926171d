"""Listings: the built-in tasks and the packaged models."""

from __future__ import annotations

import textwrap

ORDER = 10  # where the group's subcommands come in `taskvec --help`


def add(sub) -> None:
    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("models", help="list the packaged models")
    p.set_defaults(func=cmd_models)


def cmd_tasks(args) -> None:
    from taskvec.tasks import TASKS

    for task in TASKS.values():
        rules = task.rules
        print(f"{task.name:28} {task.category:12} {task.example:22} {task.description}")
        print(
            f"{'':28} rules: one_token={str(rules.one_token).lower()} leading_space={rules.leading_space} "
            f"scoring={rules.scoring}"
        )
        print(
            textwrap.fill(
                f"differs from the paper: {task.differs}", 118, initial_indent=" " * 29, subsequent_indent=" " * 29
            )
        )


def cmd_models(args) -> None:
    from taskvec.models import PACKAGED_MODELS

    for model in PACKAGED_MODELS.values():
        print(f"packaged:{model.name:14} {model.package:26} {model.description}")
