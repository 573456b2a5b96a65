"""Process-group setup for data-parallel training: submitit tasks, plain env vars, or one process.

Inside a submitit job with several tasks, `submitit.helpers.TorchDistributedEnvironment` exports
MASTER_ADDR/PORT, RANK and WORLD_SIZE; otherwise the usual `RANK`/`WORLD_SIZE` env vars (torchrun,
or a test spawning processes) are read; with neither, the run is a single process. The backend is
gloo on CPU and nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import submitit
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _submitit_tasks() -> int:
    try:
        return submitit.JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job
        return 1


def detect() -> DistEnv:
    """This process's rank and the world size (exports submitit's env vars when it has several tasks)."""
    if _submitit_tasks() > 1:
        env = submitit.helpers.TorchDistributedEnvironment().export()
        return DistEnv(env.rank, env.world_size, env.local_rank)
    world = int(os.environ.get("WORLD_SIZE", 1))
    return DistEnv(int(os.environ.get("RANK", 0)), world, int(os.environ.get("LOCAL_RANK", 0)))


def device_for(env: DistEnv) -> torch.device:
    """CUDA device of this local rank when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group (env:// rendezvous); a no-op for one process or when already joined."""
    if env.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def mean_(tensors: Iterable[torch.Tensor], env: DistEnv) -> None:
    """Average tensors in place over the processes (what DDP does to gradients)."""
    if not env.distributed:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(env.world_size)


def broadcast_(tensors: Iterable[torch.Tensor], env: DistEnv) -> None:
    """Copy rank 0's tensors to every process (identical start weights whatever each built)."""
    if env.distributed:
        for t in tensors:
            dist.broadcast(t, src=0)
