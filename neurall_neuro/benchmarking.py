"""Timing and environment helpers shared by the benchmarks and the demo.

Every figure is a median over repetitions after warm-up, taken in one process run so
ratios compare like with like.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class Timing:
    """Median wall time of ``fn`` and the spread of the repetitions (seconds)."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def time_it(
    fn: Callable[[], Any], repeats: int = 10, warmup: int = 2, cuda: bool = False
) -> Timing:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs (synchronising CUDA if asked)."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), min(samples), max(samples), repeats)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Environment:
    """Where the figures were measured."""

    cpu: str = field(default_factory=cpu_model)
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 0)
    torch_threads: int = field(default_factory=torch.get_num_threads)
    torch_version: str = torch.__version__
    python: str = platform.python_version()
    cuda_device: str | None = field(
        default_factory=lambda: torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
