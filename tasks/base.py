"""A task is a frame mask: which frames are given, which are generated, and which are scored.

MarDini is one network; the task is decided only by the mask (paper §2.1, §3). A task defines its
evaluation mask, the frames each metric protocol scores (VIDIM-Bench: `middle_frame` scores the middle
generated frame, `all_frames` every generated frame; FVD always sees the whole clip, notes §6.1), a
training-mask sampler for multi-task training, and any preparation of the input clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

PROTOCOLS = ("all_frames", "middle_frame", "whole_clip")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    references: Callable[[int], Sequence[int]]  # num_frames -> indices of the given frames
    prepare_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def eval_mask(self, num_frames: int) -> torch.Tensor:
        """(T,) bool, True = generated. At least one given and one generated frame."""
        if num_frames < 2:
            raise ValueError(f"task {self.name} needs at least 2 frames, got {num_frames}")
        mask = torch.ones(num_frames, dtype=torch.bool)
        mask[list(self.references(num_frames))] = False
        return mask

    def scored_frames(self, num_frames: int, protocol: str = "all_frames") -> List[int]:
        generated = self.eval_mask(num_frames).nonzero().flatten().tolist()
        if protocol == "all_frames":
            return generated
        if protocol == "middle_frame":  # the middle generated frame: the 5th of 9 for interpolation
            return [generated[(len(generated) - 1) // 2]]
        if protocol == "whole_clip":
            return list(range(num_frames))
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")

    def train_mask(self, batch: int, num_frames: int, *, generator: Optional[torch.Generator] = None,
                   device=None) -> torch.Tensor:
        """(B, T) masks for multi-task training: this task's mask for every clip (deterministic)."""
        return self.eval_mask(num_frames).to(device).expand(batch, num_frames).clone()

    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        return self.prepare_fn(video) if self.prepare_fn is not None else video
