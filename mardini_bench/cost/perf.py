"""Speed defaults: CPU thread count, the measured fp32 matmul peak that MFU is reported against,
and a per-host lock that keeps concurrent runs from timing at the same moment.

    from mardini_bench.cost.perf import configure_threads
    configure_threads()            # the runner calls this once, before building the model

Threads: $MARDINI_BENCH_THREADS, else $OMP_NUM_THREADS (what a local sweep sets to share the cores
between its runs, and what torchrun sets per process), else the cores this process may run on (its
CPU affinity, which SLURM and containers restrict; `os.cpu_count()` would count the whole node and
oversubscribe).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import torch

from mardini_bench.io import exclusive_lock

THREADS_ENV = "MARDINI_BENCH_THREADS"
OMP_ENV = "OMP_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may use (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no affinity call
        return max(1, os.cpu_count() or 1)


def configure_threads(num_threads: Optional[int] = None) -> int:
    """Set torch's intra-op threads to `num_threads`, $MARDINI_BENCH_THREADS, $OMP_NUM_THREADS or the
    available cores, the first that is given.

    Returns the count in effect. Inter-op threads are set to 1 where torch still allows it: the
    models run one op at a time, and a second pool only competes for the same cores.
    """
    if num_threads is not None:
        source, value = "num_threads", num_threads
    else:
        name = next((n for n in (THREADS_ENV, OMP_ENV) if os.environ.get(n)), None)
        source, value = (f"${name}", os.environ[name]) if name else ("available cores", available_cores())
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{source}={value!r}: the thread count must be a positive integer")
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran: keep torch's choice
        pass
    return torch.get_num_threads()


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
