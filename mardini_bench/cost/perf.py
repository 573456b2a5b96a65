"""Speed measurement: the matmul peak MFU is reported against, and a per-host lock that keeps
concurrent runs from timing at the same moment. Threads and devices are the runtime's
(`mardini_bench.runtime`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import torch

from mardini_bench.io import exclusive_lock


def matmul_peak_flops(size: int = 2048, repeats: int = 5, device: str = "cpu",
                      dtype: torch.dtype = torch.float32) -> float:
    """Best-of-`repeats` FLOP/s of a `size`² matmul: the practical peak MFU is measured against."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b  # warm-up: thread pool and kernel selection
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


@contextlib.contextmanager
def timing_lock(name: str = "latency", directory: Optional[Path] = None) -> Iterator[None]:
    """Hold an exclusive per-host `flock` while timing something.

    The runs of a local sweep reach their cost step at about the same time; taking turns keeps
    them from timing each other's work (other work on the machine can still add time). The lock
    lives in the temp folder, so it is per host, and the kernel frees it if the holder dies. If
    the file cannot be opened (another user's lock), timing goes on unlocked.
    """
    path = Path(directory or tempfile.gettempdir()) / f"mardini_bench-{name}.lock"
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(path))
        except OSError:
            pass  # not ours to open: time unlocked
        yield
