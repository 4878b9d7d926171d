"""What the extended studies read of the default study, per task: its first sampling's prompts (with
their format and sizes), the pairs they were drawn from under the task's rules, and the layer the
study chose on dev. Files are matched by their metadata, never by their paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

from taskvec.errors import ConfigError
from taskvec.evaluate import read_layer_choice
from taskvec.loader import task_runs
from taskvec.models import LoadedModel
from taskvec.prompts import Prompt, RunInfo, UsablePair, apply_rules, read_prompts
from taskvec.tasks.base import read_pairs


@dataclasses.dataclass(frozen=True)
class StudyTask:
    """One task of the study, as one model's first sampling left it."""

    task: str
    prompts: list[Prompt]
    info: RunInfo
    usable: list[UsablePair]  # the task's pairs as the prompts use them (the task's rules, this tokenizer)
    layer: int  # the block the study patches theta after, chosen on dev

    @property
    def test(self) -> list[Prompt]:
        return [p for p in self.prompts if p.split == "test"]

    @property
    def dev(self) -> list[Prompt]:
        return [p for p in self.prompts if p.split == "dev"]


@dataclasses.dataclass(frozen=True)
class StudyFiles:
    """One model's files of one sampling per task (found by :func:`taskvec.loader.task_runs`)."""

    model: str
    seeds: dict[str, int]
    files: dict

    @classmethod
    def match(cls, pairs: Sequence[Path], prompts: Sequence[Path], results: Sequence[Path]) -> StudyFiles:
        """Each task's pairs, prompts and results file of one sampling (theta is not read: the extended
        studies compute their own)."""
        files, model, seeds = task_runs(pairs, prompts, results)
        return cls(model, seeds, files)

    def tasks(self, lm: LoadedModel) -> Iterator[StudyTask]:
        """Each task in name order, read when reached; refused where the prompts' leading-space choice is
        not what ``lm``'s tokenizer makes under the task's rules (the prompts belong to another tokenizer)."""
        for task in sorted(self.files):
            prompts, info = read_prompts(self.files[task].prompts)
            usable, rendering = apply_rules(read_pairs(self.files[task].pairs), lm.tokenizer, info.task.rules)
            if rendering["leading_space"] != info.leading_space:
                raise ConfigError(
                    f"{task}: the prompts file was written {'with' if info.leading_space else 'without'} a leading "
                    "space, but this model's tokenizer now chooses otherwise: the prompts belong to another tokenizer",
                    "make the prompts again with this model's tokenizer (`taskvec make-prompts`)",
                    "`make reproduce` remakes the prompts",
                )
            layer = read_layer_choice(self.files[task].results).layer
            yield StudyTask(task, prompts, info, usable, layer)
