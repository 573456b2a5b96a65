"""Latent statistics: the shift and scale that give a codec's latents mean 0 and std 1 on a dataset.

Latent diffusion models divide latents by one scale factor measured on training data (SD's 0.18215
for its VAE) so the noise schedule's signal-to-noise ratios hold. `latent_stats` measures the mean
and std of `codec.encode` over the first clips of a split; `python -m mardini_bench.data stats`
prints them as the overrides to use.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch.utils.data import Dataset


@torch.no_grad()
def latent_stats(codec: torch.nn.Module, data: Dataset, num_clips: int, batch: int = 32) -> Tuple[float, float]:
    """(mean, std) of `codec.encode` over the first `num_clips` clips of `data` (all of it if fewer).

    Accumulated in float64, so the result does not depend on the batch size."""
    n = min(num_clips, len(data))
    if n < 1:
        raise ValueError(f"latent statistics need at least one clip, got a {len(data)}-clip dataset")
    total = total_sq = count = 0.0
    for start in range(0, n, batch):
        video = torch.stack([data[i] for i in range(start, min(n, start + batch))])
        z = codec.encode(video.float()).double()
        total, total_sq, count = total + z.sum().item(), total_sq + z.pow(2).sum().item(), count + z.numel()
    mean = total / count
    std = max(total_sq / count - mean ** 2, 0.0) ** 0.5
    if std <= 0:
        raise ValueError(f"latents of the first {n} clips are constant ({mean:g}); they cannot be normalised")
    return mean, std
