"""Training-free baselines: fill the masked frames from the reference frames.

Each `BASELINES` entry has the model sampler's signature, `(video, mask) -> video`, with video
(B, T, 3, H, W) in [0, 1] and mask (B, T) True = generated; reference frames come back unchanged.
A model that does not beat these has not learnt motion. `validate=False` skips the input check, which
reads the mask on the host: the diffusion prior (`model.diffusion.prior`) calls them every training
step on masks the trainer made, where that read would stall a GPU.
"""

from __future__ import annotations

import torch

from mardini_bench.registry import BASELINES
from models.masks import neighbours


def _frames(video: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """video (B, T, ...) gathered at per-clip frame indices (B, T)."""
    return video[torch.arange(video.shape[0], device=video.device)[:, None], index]


def _check(video: torch.Tensor, mask: torch.Tensor) -> None:
    if mask.shape != video.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (B, T) = {tuple(video.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
    if mask.all(dim=1).any():
        raise ValueError("every clip needs at least one reference (unmasked) frame")


@BASELINES.register
def copy_nearest(video: torch.Tensor, mask: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Each masked frame copies the nearest reference frame (the earlier one on a tie)."""
    if validate:
        _check(video, mask)
    before, after = neighbours(mask)
    t = torch.arange(mask.shape[1], device=mask.device)
    use_before = (before >= 0) & ((after >= mask.shape[1]) | (t - before <= after - t))
    return _frames(video, torch.where(use_before, before, after))


@BASELINES.register
def linear_blend(video: torch.Tensor, mask: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """Masked frames blend linearly between the references before and after; copy when one side lacks one."""
    if validate:
        _check(video, mask)
    T = mask.shape[1]
    before, after = neighbours(mask)
    both = (before >= 0) & (after < T)
    t = torch.arange(T, device=mask.device).expand_as(before)
    w = torch.where(both, (t - before).float() / (after - before).clamp(min=1).float(), 0.0)
    w = w.to(video.dtype)[:, :, None, None, None]
    blend = (1 - w) * _frames(video, before.clamp(min=0)) + w * _frames(video, after.clamp(max=T - 1))
    return torch.where(both[:, :, None, None, None], blend, copy_nearest(video, mask, validate=False))
