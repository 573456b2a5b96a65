"""Video expansion: the first k frames given, the rest generated (paper §3: "masking half the frames").

The project page demos give 5 frames and generate 12 more (17 in all); Fig. 8 gives 16 and generates 12.
"""

import torch

from mardini_bench.registry import TASKS
from tasks.base import Task, uniform_ints


def _leading(given: int):
    """num_frames -> the first `given` frames (0 = half, rounded down), clamped to [1, T-1]."""
    return lambda n: tuple(range(max(1, min(n - 1, given or n // 2))))


def _random_leading(batch: int, n: int, generator) -> torch.Tensor:
    """Training: k ~ U{1..T-1} leading frames given, so one model expands from any context length."""
    k = uniform_ints(batch, 1, n - 1, generator)
    return torch.arange(n, device=k.device)[None] >= k[:, None]


@TASKS.register
def expansion(given: int = 0) -> Task:
    """`given` leading frames are references; 0 means half the clip (T // 2, at least 1)."""
    if given < 0:
        raise ValueError(f"expansion: given must be >= 0 (0 = half the clip), got {given}")
    return Task("expansion", "the first frames given (half by default); the rest generated",
                _leading(given), sampler=_random_leading)
