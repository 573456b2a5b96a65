"""Looping: interpolation whose last frame equals the first (project page demos)."""

import torch

from mardini_bench.registry import TASKS
from tasks.base import Task


def _loop(video: torch.Tensor) -> torch.Tensor:
    out = video.clone()
    out[..., -1, :, :, :] = video[..., 0, :, :, :]
    return out


@TASKS.register
def looping() -> Task:
    return Task("looping", "first frame given twice, as first and last; the loop between is generated",
                lambda n: (0, n - 1), prepare_fn=_loop)
