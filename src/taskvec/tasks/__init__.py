"""Task definitions: each task turns a seed into a list of (input, valid outputs) pairs."""

from __future__ import annotations

from taskvec.errors import ConfigError
from taskvec.tasks.algorithmic import ALGORITHMIC_TASKS
from taskvec.tasks.base import Pair, Task
from taskvec.tasks.knowledge import KNOWLEDGE_TASKS
from taskvec.tasks.linguistic import LINGUISTIC_TASKS
from taskvec.tasks.translation import TRANSLATION_TASKS

TASKS: dict[str, Task] = {
    task.name: task for task in (*ALGORITHMIC_TASKS, *TRANSLATION_TASKS, *LINGUISTIC_TASKS, *KNOWLEDGE_TASKS)
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Pair", "Task", "get_task"]
