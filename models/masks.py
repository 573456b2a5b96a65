"""Training mask schedules: which frames of each clip are masked (paper §2.1, Fig. 4; design §3.1).

A schedule is a pure function `(batch, frames, *, step, generator, device) -> mask (B, T) bool`,
True = masked (planner sees [MASK], generator denoises it), False = reference frame. Randomness
comes only from the explicit `torch.Generator` (MAE `random_masking`, not global RNG), and every
mask keeps at least one reference and at least one masked frame.

The paper's "mask ratio" is ambiguous (masked vs preserved fraction, design §3.1); these schedules
sample the *number of reference frames* directly, which is unambiguous and what gets logged.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch

from mardini_bench.config import DEFAULT_TASKS, MaskConfig
from mardini_bench.registry import MASK_SCHEDULES, TASKS
from mardini_bench.runtime import draw
from tasks.base import multitask_train_mask

MaskFn = Callable[..., torch.Tensor]


def neighbours(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference index at or before / at or after each frame: (B, T) each, -1 / T when none."""
    B, T = mask.shape
    t = torch.arange(T, device=mask.device).expand(B, T)
    before = torch.where(~mask, t, -1).cummax(dim=1).values
    after = torch.where(~mask, t, T).flip(1).cummin(dim=1).values.flip(1)
    return before, after


def _rand(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    # on the generator's device (the CPU without one), then moved: a seed gives the same masks anywhere
    return draw(torch.rand, shape, generator=generator, device=device, default="cpu")


def masks_from_ref_counts(n_ref: torch.Tensor, frames: int, generator: Optional[torch.Generator],
                          device) -> torch.Tensor:
    """n_ref (B,) reference-frame counts -> (B, T) mask with references at random positions."""
    n_ref = n_ref.clamp(1, frames - 1).to(device)
    rank = _rand((len(n_ref), frames), generator, device).argsort(dim=1).argsort(dim=1)  # random ranks
    return rank >= n_ref[:, None]  # the n_ref lowest-ranked frames are references


def _uniform_counts(lo: torch.Tensor, hi: torch.Tensor, generator, device) -> torch.Tensor:
    u = _rand(lo.shape, generator, device)
    return lo + (u * (hi - lo + 1).float()).floor().long().clamp(max=(hi - lo))


def fixed_mask(ref_frames, batch: int, frames: int, device=None) -> torch.Tensor:
    """(B, T) mask with the given reference indices (negative counts from the end)."""
    mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    for i in ref_frames:
        if not -frames <= i < frames:
            raise ValueError(f"reference frame {i} is outside a {frames}-frame clip")
        mask[:, i] = False
    if mask.all() or not mask.any():
        raise ValueError(f"reference frames {tuple(ref_frames)} leave no masked or no reference frame")
    return mask


@MASK_SCHEDULES.register
def tasks(cfg: MaskConfig) -> MaskFn:
    """Each clip draws one of `cfg.tasks` (by `cfg.task_weights`) and takes that task's training mask.

    Training then covers exactly the masks evaluation scores; random reference positions (`uniform`)
    hit the interpolation mask in under 1% of 9-frame clips. The trainer fills an empty `cfg.tasks`
    with the run's `eval.tasks`; used alone, empty means the default evaluated tasks.
    """
    chosen = [TASKS.build(name) for name in cfg.tasks or DEFAULT_TASKS]
    weights = cfg.task_weights or None

    def sample(batch: int, frames: int, *, step: int = 0, generator=None, device=None) -> torch.Tensor:
        return multitask_train_mask(chosen, batch, frames, generator=generator, device=device, weights=weights)[0]

    return sample


@MASK_SCHEDULES.register
def uniform(cfg: MaskConfig) -> MaskFn:
    """Reference-frame count uniform in [min_ref, max_ref] (clamped to [1, T-1]); random positions."""

    def sample(batch: int, frames: int, *, step: int = 0, generator=None, device=None) -> torch.Tensor:
        lo = torch.full((batch,), max(1, min(cfg.min_ref, frames - 1)))
        hi = torch.full((batch,), max(1, min(cfg.max_ref, frames - 1)))
        return masks_from_ref_counts(_uniform_counts(lo, torch.maximum(lo, hi), generator, "cpu"),
                                     frames, generator, device)

    return sample


@MASK_SCHEDULES.register
def truncnorm(cfg: MaskConfig) -> MaskFn:
    """LTH14/mar: masked fraction ~ N(mean, std) truncated to [ratio_min, 1], by inverse CDF."""

    def sample(batch: int, frames: int, *, step: int = 0, generator=None, device=None) -> torch.Tensor:
        normal = torch.distributions.Normal(0.0, 1.0)
        lo = normal.cdf(torch.tensor((cfg.ratio_min - cfg.ratio_mean) / cfg.ratio_std))
        hi = normal.cdf(torch.tensor((1.0 - cfg.ratio_mean) / cfg.ratio_std))
        u = lo + (hi - lo) * _rand((batch,), generator, "cpu")
        ratio = cfg.ratio_mean + cfg.ratio_std * torch.special.ndtri(u)  # masked fraction
        n_masked = (ratio * frames).round().long()
        return masks_from_ref_counts(frames - n_masked, frames, generator, device)

    return sample


@MASK_SCHEDULES.register
def fixed(cfg: MaskConfig) -> MaskFn:
    """The same mask every step, e.g. a task's evaluation mask (interpolation: refs (0, -1))."""

    def sample(batch: int, frames: int, *, step: int = 0, generator=None, device=None) -> torch.Tensor:
        return fixed_mask(cfg.ref_frames, batch, frames, device)

    return sample


@MASK_SCHEDULES.register
def curriculum(cfg: MaskConfig) -> MaskFn:
    """Fig. 4's curriculum: the reference fraction range shrinks as training advances.

    `cfg.stages` = ((until_step, min_ref_frac, max_ref_frac), ...); the first stage whose
    until_step exceeds `step` applies; the count is uniform in the resulting integer range.
    """

    def sample(batch: int, frames: int, *, step: int = 0, generator=None, device=None) -> torch.Tensor:
        stage = next((s for s in cfg.stages if step < s[0]), cfg.stages[-1])
        lo = max(1, min(frames - 1, math.ceil(stage[1] * frames)))
        hi = max(lo, min(frames - 1, math.floor(stage[2] * frames)))
        counts = _uniform_counts(torch.full((batch,), lo), torch.full((batch,), hi), generator, "cpu")
        return masks_from_ref_counts(counts, frames, generator, device)

    return sample


def build_mask_schedule(cfg: MaskConfig) -> MaskFn:
    return MASK_SCHEDULES.build(cfg.name, cfg)
