"""Joining a CPU process group from a test's spawned workers (tests/test_ddp.py, tests/test_fsdp.py)."""

from __future__ import annotations

import os
import socket

import torch

from mardini_bench.run import distributed
from mardini_bench.run.distributed import DistEnv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, world: int, port: int) -> DistEnv:
    """Export this worker's rank, join the gloo group on localhost at `port`, one torch thread."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    env = distributed.detect()
    distributed.init(env, torch.device("cpu"))
    return env
