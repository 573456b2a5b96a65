"""One runtime per run: the device tensors live on, the autocast dtype, torch threads and loader workers.

    runtime = Runtime.resolve(cfg)                # CUDA when present, else the CPU; the env may override
    runtime.device, runtime.dtype, runtime.threads, runtime.workers
    with runtime.autocast(): ...                  # bf16 on CUDA under train.precision=auto
    gen = runtime.generator(seed)                 # draws on the run's device

The runner (or a benchmark, or the long-video demo) resolves it once and passes it down: the trainer,
the evaluator, the feature networks, the baselines and the cost step take it instead of guessing a
device from parameters. How a run executes never enters its config or run id, so the same config on
a laptop CPU and on a GPU is one experiment (each device draws its own noise: bit-exact on that device).

Environment, checked before any work by `check_environment` (one `error:` line naming the variable):

    MARDINI_BENCH_DEVICE    cpu, cuda or cuda:N; default this process's CUDA device when there is one
    MARDINI_BENCH_THREADS   torch intra-op threads; default $OMP_NUM_THREADS (what a local sweep sets
                            to share the cores between its runs, and what torchrun sets per process),
                            else the cores this process may run on (its CPU affinity, which SLURM and
                            containers restrict; `os.cpu_count()` would count the whole node)
    MARDINI_BENCH_WORKERS   DataLoader workers when `data.workers` is 0; default none on the CPU (both
                            cores stay with the model) and up to 8 on CUDA (rendering and decoding
                            clips must keep up with a chip that trains thousands of clips a second)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Dict, Mapping, Optional, Union

from mardini_bench.config import ConfigError

# torch is imported inside the functions that need it: the sweep's light commands (status, collect)
# count cores and check the environment through this module without loading torch.
if TYPE_CHECKING:
    import torch

DEVICE_ENV = "MARDINI_BENCH_DEVICE"
THREADS_ENV = "MARDINI_BENCH_THREADS"
WORKERS_ENV = "MARDINI_BENCH_WORKERS"
OMP_ENV = "OMP_NUM_THREADS"
GPU_WORKERS = 8  # loader workers on CUDA by default (fewer when the process may use fewer cores)

DeviceLike = Union[str, "torch.device"]


class RuntimeSettingError(ConfigError):
    """A device, thread or worker setting that cannot run here; the message names it and what is valid."""


def available_cores() -> int:
    """Cores this process may use (its affinity mask), at least 1: the one way cores are counted."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no affinity call
        return max(1, os.cpu_count() or 1)


def _positive_int(source: str, value: Any, allow_zero: bool = False) -> int:
    try:
        count = int(str(value).strip())
    except ValueError:
        count = -1
    if count < (0 if allow_zero else 1):
        valid = "a whole number >= 0" if allow_zero else "a positive whole number"
        raise RuntimeSettingError(f"{source}={value!r}: must be {valid}")
    return count


def parse_device(text: DeviceLike, source: str = DEVICE_ENV) -> torch.device:
    """`text` as a device this machine has: cpu, meta, cuda or cuda:N (N < the CUDA device count)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise RuntimeSettingError(f"{source}={str(text)!r}: not a device; valid: cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RuntimeSettingError(f"{source}={str(text)!r}: this machine has no CUDA device; valid: cpu")
        if device.index is not None and device.index >= count:
            raise RuntimeSettingError(f"{source}={str(text)!r}: this machine has {count} CUDA device(s); "
                                      f"valid: cpu, cuda, cuda:0..cuda:{count - 1}")
    elif device.type not in ("cpu", "meta"):
        raise RuntimeSettingError(f"{source}={str(text)!r}: unsupported device type; valid: cpu, cuda, cuda:N")
    return device


def default_device(local_rank: int = 0) -> torch.device:
    """This process's CUDA device (by local rank) when the machine has one, else the CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def thread_count(environ: Mapping[str, str] = os.environ) -> int:
    """$MARDINI_BENCH_THREADS, else $OMP_NUM_THREADS, else the available cores."""
    for name in (THREADS_ENV, OMP_ENV):
        if environ.get(name):
            return _positive_int(f"${name}", environ[name])
    return available_cores()


def worker_count(configured: int, device: torch.device, environ: Mapping[str, str] = os.environ) -> int:
    """`data.workers` when set (> 0), else $MARDINI_BENCH_WORKERS, else none on the CPU and up to
    GPU_WORKERS on CUDA (one core stays with the training process)."""
    if configured > 0:
        return configured
    if environ.get(WORKERS_ENV, "").strip():
        return _positive_int(f"${WORKERS_ENV}", environ[WORKERS_ENV], allow_zero=True)
    return min(GPU_WORKERS, available_cores() - 1) if device.type == "cuda" else 0


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """bf16 under `auto` on CUDA only; fp32 (no autocast) on CPU unless bf16 is asked for.

    Why not bf16 on CPUs with native bf16 matmuls: on a 2-core AVX512-BF16 CPU a bf16 matmul runs at
    2.1x the fp32 rate, but a `small` training step under autocast takes 699 ms against 535 ms in fp32,
    because the fused CPU attention's backward at head dim 24 is 3x slower in bf16 than in fp32."""
    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def configure_threads(count: Optional[int] = None) -> int:
    """Set torch's intra-op threads to `count`, else `thread_count()`; returns the count in effect.

    Inter-op threads are set to 1 where torch still allows it: the models run one op at a time, and
    a second pool only competes for the same cores."""
    import torch

    torch.set_num_threads(thread_count() if count is None else _positive_int("threads", count))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran: keep torch's choice
        pass
    return torch.get_num_threads()


def check_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a bad $MARDINI_BENCH_DEVICE, _THREADS or _WORKERS before any work (plan time)."""
    if environ.get(DEVICE_ENV, "").strip():
        parse_device(environ[DEVICE_ENV].strip())
    thread_count(environ)
    if environ.get(WORKERS_ENV, "").strip():
        _positive_int(f"${WORKERS_ENV}", environ[WORKERS_ENV], allow_zero=True)


def draw_device(generator: Optional["torch.Generator"], default: Any) -> Any:
    """Where a draw from `generator` happens: on the generator's own device (a CPU generator then seeds a
    GPU run with the CPU's numbers), else on `default`."""
    return generator.device if generator is not None else default


def draw(sampler: Callable[..., "torch.Tensor"], *args: Any, generator: Optional["torch.Generator"] = None,
         device: Any = None, default: Any = None, **kwargs: Any) -> "torch.Tensor":
    """`sampler(*args, **kwargs)` (torch.rand, randn, randint...) drawn on `draw_device(generator, default
    or device)`, then moved to `device` (None: left where it was drawn). The one place models and tasks
    decide where their randomness is drawn."""
    out = sampler(*args, generator=generator, device=draw_device(generator, default or device), **kwargs)
    return out if device is None else out.to(device)


@dataclass(frozen=True)
class Runtime:
    """Where and how one process runs: resolved once, then passed down (never guessed again)."""

    device: "torch.device"
    dtype: Optional["torch.dtype"] = None  # autocast compute dtype; None = no autocast (fp32)
    threads: int = 1  # torch intra-op threads (set on the process by `configure`)
    workers: int = 0  # DataLoader worker processes

    @classmethod
    def resolve(cls, cfg: Any = None, device: Optional[DeviceLike] = None, local_rank: int = 0,
                environ: Mapping[str, str] = os.environ) -> "Runtime":
        """The runtime for `cfg` (a RunConfig, or None for defaults): `device` if given, else
        $MARDINI_BENCH_DEVICE, else `default_device(local_rank)`; threads and workers as the module
        docstring says. Nothing is changed on the process until `configure()`."""
        if device is not None:
            dev = parse_device(device, "device")
        elif environ.get(DEVICE_ENV, "").strip():
            dev = parse_device(environ[DEVICE_ENV].strip())
        else:
            dev = default_device(local_rank)
        precision = cfg.train.precision if cfg is not None else "auto"
        configured = cfg.data.workers if cfg is not None else 0
        return cls(dev, autocast_dtype(precision, dev), thread_count(environ), worker_count(configured, dev, environ))

    def configure(self) -> "Runtime":
        """Apply the thread count to this process (before any torch work) and select the CUDA device."""
        import torch

        configure_threads(self.threads)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        return self

    def batch_for(self, item_bytes: int, default: int, limit: int = 1024) -> int:
        """Items per batch for work that takes `item_bytes` of device memory each: on CUDA as many as
        half the free memory holds (at most `limit`), elsewhere `default` (the config's batch size)."""
        if not self.is_cuda or item_bytes <= 0:
            return default
        import torch

        free, _ = torch.cuda.mem_get_info(self.device)
        return max(1, min(limit, int(free * 0.5) // item_bytes))

    # -- what the run's code asks of it ------------------------------------------------------
    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> ContextManager:
        """Mixed precision for model compute (none in fp32)."""
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def generator(self, seed: int) -> Optional[torch.Generator]:
        """A generator seeded with `seed` on the run's device (None on meta, which draws nothing)."""
        import torch

        if self.device.type == "meta":
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def to(self, x: "torch.Tensor") -> "torch.Tensor":
        """`x` on the run's device. A host tensor bound for CUDA is pinned first: a copy from pageable
        memory may wait for the GPU to drain its queue, a pinned one never blocks the host."""
        if self.is_cuda and x.device.type == "cpu":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def synchronize(self) -> None:
        import torch

        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def describe(self) -> Dict[str, Any]:
        """JSON-ready summary for `result.json` and benchmark headers."""
        import torch

        name = torch.cuda.get_device_name(self.device) if self.is_cuda else None
        return {"device": str(self.device), "device_name": name, "autocast": str(self.dtype).replace("torch.", "")
                if self.dtype else None, "threads": self.threads, "workers": self.workers}


__all__ = ["Runtime", "RuntimeSettingError", "available_cores", "autocast_dtype", "check_environment",
           "configure_threads", "default_device", "draw", "draw_device", "parse_device", "thread_count", "worker_count"]
