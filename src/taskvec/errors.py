"""The errors a user can act on. Each says what is wrong and carries the command (or the edit) that
fixes it; the CLI prints both and exits with status 1 (with ``-v``, the traceback as well)."""

from __future__ import annotations


class TaskvecError(Exception):
    """Base class: ``message`` says what is wrong, ``fix`` what to run or change (a subclass gives a
    default for its kind of problem)."""

    default_fix = ""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = self.default_fix if fix is None else fix

    def __str__(self) -> str:
        return f"{self.message}\n  to fix: {self.fix}" if self.fix else self.message


class ConfigError(TaskvecError, ValueError):
    """A setting in params.yaml or a command-line argument is invalid or inconsistent."""

    default_fix = "correct the setting named above (params.yaml, or the command's arguments; `--help` lists them)"


class ArtifactError(TaskvecError, RuntimeError):
    """An input artifact is missing, truncated or of the wrong shape."""

    default_fix = "`make reproduce` remakes a study's missing files (and what depends on them)"


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
