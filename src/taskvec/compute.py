"""Where and how a step computes: one settings object, passed whole from the CLI to the library."""

from __future__ import annotations

import dataclasses
import os

from taskvec import defaults
from taskvec.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Compute:
    """``device``: cpu, cuda, cuda:N or auto (cuda if available); ``dtype``: auto (bfloat16 on a GPU,
    float32 on CPU), float32, bfloat16 or float16; ``batch_size``: prompts per forward pass (halved
    after running out of accelerator memory); ``threads``: CPU threads for torch (0: torch's
    default); ``progress``: show progress bars."""

    device: str = defaults.DEVICE
    dtype: str = defaults.DTYPE
    batch_size: int = defaults.BATCH_SIZE
    threads: int = defaults.THREADS
    progress: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.threads < 0:
            raise ConfigError(f"threads must be 0 (torch's default) or more, got {self.threads}")

    def load(self, model_dir: str | os.PathLike[str]):
        """The model in ``model_dir`` on this device and dtype (:func:`taskvec.models.load_model`)."""
        from taskvec.models import load_model

        return load_model(model_dir, device=self.device, dtype=self.dtype, threads=self.threads)


DEFAULT_COMPUTE = Compute()
