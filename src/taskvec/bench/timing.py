"""Timing: medians of repeated runs (synchronised on a GPU), and what machine they ran on."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


@dataclasses.dataclass(frozen=True)
class Timing:
    median: float
    min: float
    max: float
    runs: int

    def as_dict(self) -> dict:
        return {
            "median": round(self.median, 4),
            "min": round(self.min, 4),
            "max": round(self.max, 4),
            "runs": self.runs,
        }


def timed(fn: Callable[[], object], repeats: int, device: torch.device | None = None) -> Timing:
    return timed_together({"only": fn}, repeats, device)["only"]


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_together(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device | None = None
) -> dict[str, Timing]:
    """Time functions that are compared with each other in alternation (a, b, a, b, ...), so that a
    slow phase of the machine (another process, frequency changes) falls on both alike. On a GPU the
    device is synchronised before each clock reading."""
    for fn in fns.values():
        fn()  # warm-up: allocator, thread pool, lazy initialisation, kernel selection
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(t), min(t), max(t), repeats) for name, t in times.items()}


def machine() -> dict:
    from importlib.metadata import version

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {p: _version(version, p) for p in ("taskvec", "torch", "transformers")},
    }


def _version(version: Callable[[str], str], package: str) -> str:
    from importlib.metadata import PackageNotFoundError

    try:
        return version(package)
    except PackageNotFoundError:  # run from a source tree (PYTHONPATH=src)
        return "source tree"
