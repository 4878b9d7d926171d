"""Task definitions: each task turns a seed into a list of (input, valid outputs) pairs."""

from __future__ import annotations

from taskvec.tasks.algorithmic import ALGORITHMIC_TASKS
from taskvec.tasks.base import Pair, Task

TASKS: dict[str, Task] = {task.name: task for task in ALGORITHMIC_TASKS}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


__all__ = ["TASKS", "Pair", "Task", "get_task"]
