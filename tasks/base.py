"""A task is a frame mask: which frames are given, which are generated, and which are scored.

MarDini is one network; the task is decided only by the mask (paper §2.1, §3; design §3.2). A task
defines its evaluation mask, the frames each metric protocol scores, a training-mask sampler for
multi-task training, and any preparation of the input clip. Masks are bool, True = masked (generated),
False = reference (given); every mask has at least one of each.

Metric protocols (VIDIM-Bench, design §6.1):
  `middle_frame`  the middle generated frame only: the 5th of 9 for interpolation (MidF-SSIM/LPIPS);
  `all_frames`    every generated frame (FID pools them; PSNR/SSIM/LPIPS average them);
  `whole_clip`    every frame, the given ones included: FVD's I3D needs the full 9-frame clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from mardini_bench.runtime import draw, draw_device

PROTOCOLS = ("all_frames", "middle_frame", "whole_clip")

# (batch, num_frames, generator) -> (B, T) bool mask drawn on the generator's device
Sampler = Callable[[int, int, Optional[torch.Generator]], torch.Tensor]


_CONSTANTS: Dict[Tuple[Any, str], torch.Tensor] = {}


def constant_on(key: Any, device: Any, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor `make()` (a function of `key` alone) on `device`, made and copied there once: a copy
    from pageable host memory every training step can stall a GPU. Callers must not modify it."""
    where = str(torch.device(device)) if device is not None else "cpu"
    if (key, where) not in _CONSTANTS:
        _CONSTANTS[(key, where)] = make().to(where)
    return _CONSTANTS[(key, where)]


def uniform_ints(batch: int, low: int, high: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """(B,) integers uniform in [low, high], drawn on the generator's device (reproducible per seed)."""
    return draw(torch.randint, low, high + 1, (batch,), generator=generator, default="cpu")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    references: Callable[[int], Sequence[int]]  # num_frames -> indices of the given frames (eval mask)
    sampler: Optional[Sampler] = None  # training masks; None = the eval mask for every clip
    prepare_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # input clip -> task's clip

    def eval_mask(self, num_frames: int) -> torch.Tensor:
        """(T,) bool, True = generated. At least one given and one generated frame."""
        if num_frames < 2:
            raise ValueError(f"task {self.name} needs at least 2 frames, got {num_frames}")
        mask = torch.ones(num_frames, dtype=torch.bool)
        mask[list(self.references(num_frames))] = False
        if mask.all() or not mask.any():
            raise ValueError(f"task {self.name}: a {num_frames}-frame clip leaves no given or no generated frame")
        return mask

    def scored_frames(self, num_frames: int, protocol: str = "all_frames") -> List[int]:
        """Frame indices a metric under `protocol` scores (see the module docstring)."""
        generated = self.eval_mask(num_frames).nonzero().flatten().tolist()
        if protocol == "all_frames":
            return generated
        if protocol == "middle_frame":  # the middle generated frame (the lower one of an even count)
            return [generated[(len(generated) - 1) // 2]]
        if protocol == "whole_clip":
            return list(range(num_frames))
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")

    def train_mask(self, batch: int, num_frames: int, *, generator: Optional[torch.Generator] = None,
                   device=None) -> torch.Tensor:
        """(B, T) training masks of this task: random where the task has a free choice.

        Randomness comes only from `generator` (drawn on its device, then moved to `device`), so the
        same seed gives the same masks on any device.
        """
        if self.sampler is None:
            mask = constant_on(("eval_mask", self.name, num_frames), device, lambda: self.eval_mask(num_frames))
            return mask.expand(batch, num_frames).clone()
        if num_frames < 2:
            raise ValueError(f"task {self.name} needs at least 2 frames, got {num_frames}")
        return self.sampler(batch, num_frames, generator).to(device)

    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        """The clip this task conditions on and scores against: (..., T, 3, H, W); identity by default."""
        return self.prepare_fn(video) if self.prepare_fn is not None else video


def multitask_train_mask(tasks: Sequence[Task], batch: int, num_frames: int, *,
                         generator: Optional[torch.Generator] = None, device=None,
                         weights: Optional[Sequence[float]] = None) -> tuple:
    """Multi-task training masks: each clip draws one task (by `weights`, default uniform).

    Returns `(mask (B, T) bool, task_index (B,) long)` so the trainer can log the task mix.
    """
    if not tasks:
        raise ValueError("multitask_train_mask needs at least one task")
    w = [1.0] * len(tasks) if weights is None else [float(v) for v in weights]
    if len(w) != len(tasks) or min(w) < 0 or sum(w) <= 0:
        raise ValueError(f"weights must be {len(tasks)} non-negative numbers with a positive sum, got {weights}")
    gen_device = draw_device(generator, "cpu")
    probs = constant_on(("task_weights", tuple(w)), gen_device, lambda: torch.tensor(w, dtype=torch.float))
    which = torch.multinomial(probs, batch, replacement=True, generator=generator)
    masks = torch.stack([t.train_mask(batch, num_frames, generator=generator, device=gen_device) for t in tasks])
    mask = masks[which, torch.arange(batch, device=gen_device)]  # (B, T): clip b takes its task's mask
    return mask.to(device), which.to(device)
