"""The errors a user can act on. Each says what is wrong and carries the command (or the edit) that
fixes it, in the library's terms (arguments, files); ``study_fix`` adds, where it differs, what to
change in a study (params.yaml, `make reproduce`). The CLI, which the study runs, prints all three and
exits with status 1 (with ``-v``, the traceback as well)."""

from __future__ import annotations


class TaskvecError(Exception):
    """Base class: ``message`` says what is wrong, ``fix`` what to run or change, ``study_fix`` what
    to change in a study (a subclass gives defaults for its kind of problem)."""

    default_fix = ""
    default_study_fix = ""

    def __init__(self, message: str, fix: str | None = None, study_fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = self.default_fix if fix is None else fix
        self.study_fix = self.default_study_fix if study_fix is None else study_fix

    def __str__(self) -> str:
        return f"{self.message}\n  to fix: {self.fix}" if self.fix else self.message


class ConfigError(TaskvecError, ValueError):
    """A setting (an argument, a command-line option, or params.yaml in a study) is invalid or inconsistent."""

    default_fix = "correct the setting named above (`--help` lists a command's options)"
    default_study_fix = "the study's settings are in params.yaml"


class ArtifactError(TaskvecError, RuntimeError):
    """An input artifact is missing, truncated or of the wrong shape."""

    default_fix = "make the file again with the step that wrote it"
    default_study_fix = "`make reproduce` remakes a study's missing files (and what depends on them)"


class SourceError(TaskvecError, RuntimeError):
    """A data source of a built-in task (a Python or Debian package) is not installed."""

    default_fix = "`make setup` (as root, it installs the Debian packages too)"


class TaskFileError(TaskvecError, ValueError):
    """A task file of your own is malformed; the message names the file, the line and the problem."""

    default_fix = "correct that line of the file (README, 'Your own tasks', gives the format)"


class UnsupportedArchitecture(TaskvecError, ValueError):
    """A model's architecture has no known layout of decoder blocks, final norm and unembedding."""

    default_fix = "use a model of one of the architectures listed above (README, 'Models')"


class StudyBusyError(TaskvecError, RuntimeError):
    """Another study run works in the same directory."""

    default_fix = "wait for it to finish; if no run works there, `snakemake --unlock` in that directory"


class OutOfMemory(TaskvecError, MemoryError):
    """The accelerator ran out of memory even at batch size 1."""

    default_fix = "use a smaller model, a smaller dtype (bfloat16 rather than float32), or the CPU (--device cpu)"
    default_study_fix = "compute.dtype and compute.device in params.yaml"
