"""Looping: interpolation whose last frame is the first one again (project page demos; design §3.2)."""

import torch

from mardini_bench.registry import TASKS
from tasks.base import Task
from tasks.interpolation import first_and_last


def close_loop(video: torch.Tensor) -> torch.Tensor:
    """(..., T, 3, H, W) -> a copy whose frame T-1 is frame 0, so the generated frames close a loop."""
    out = video.clone()
    out[..., -1, :, :, :] = video[..., 0, :, :, :]
    return out


@TASKS.register
def looping() -> Task:
    return Task("looping", "frame 0 given as both first and last frame; the loop between is generated",
                first_and_last, prepare_fn=close_loop)
