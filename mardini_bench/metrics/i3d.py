"""I3D (Inception-v1 inflated to 3D), RGB, Kinetics-400: the FVD feature network.

This is the tf.hub module `deepmind/i3d-kinetics-400/1` that the original TF FVD code uses
(tensor `RGB/inception_i3d/Mean:0`), loaded from `i3d_kinetics400_tfhub.pt`. Module and
parameter names follow the file's keys (`Mixed_3b.Branch_1.Conv3d_0b_3x3.conv.weight`), so
`load_state_dict(strict=True)` checks that every tensor found its layer.

What has to match TF for the features to match (Carreira & Zisserman 2017; the TF graph):
  * "SAME" padding computed from the actual input size, the odd pixel going *after*;
  * BatchNorm in inference mode with eps 1e-3 and no scale (the file stores weight = 1);
  * the feature is the 400 pre-softmax logits averaged over the remaining time steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mardini_bench.weights import resolve_weights

WEIGHTS_NAME = "i3d_kinetics400_tfhub.pt"
MIN_FRAMES = 9  # fewer frames leave < 2 time steps before the (2,7,7) VALID average pool
INPUT_SIZE = 224


def tf_same_pad(sizes: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> List[int]:
    """TF "SAME" padding for F.pad (last dim first); the extra pixel goes after, as in TF."""
    pads: List[int] = []
    for size, k, s in reversed(list(zip(sizes, kernel, stride))):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d (SAME) -> BatchNorm (eps 1e-3) -> ReLU; the logits layer has bias and no BN."""

    def __init__(self, c_in: int, c_out: int, kernel: Tuple[int, int, int] = (1, 1, 1),
                 stride: Tuple[int, int, int] = (1, 1, 1), logits: bool = False) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride, bias=logits)
        self.bn = None if logits else nn.BatchNorm3d(c_out, eps=1e-3)  # TF default eps, not 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, tf_same_pad(x.shape[2:], self.conv.kernel_size, self.stride))
        x = self.conv(x)
        return x if self.bn is None else F.relu(self.bn(x))


def max_pool_same(x: torch.Tensor, kernel: Tuple[int, int, int], stride: Tuple[int, int, int]) -> torch.Tensor:
    # TF pads max-pools with -inf; inputs here are post-ReLU, but -inf keeps it exact regardless.
    x = F.pad(x, tf_same_pad(x.shape[2:], kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class Branch(nn.Module):
    """One inception branch: named Unit3D layers applied in order (names are the TF scopes)."""

    def __init__(self, layers: Sequence[Tuple[str, Unit3D]], pool_first: bool = False) -> None:
        super().__init__()
        self.pool_first = pool_first  # branch 3: 3x3x3 stride-1 max-pool, then 1x1x1 conv
        self.names = [name for name, _ in layers]
        for name, layer in layers:
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_first:
            x = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class Mixed(nn.Module):
    """Inception module: four branches concatenated on channels."""

    def __init__(self, c_in: int, c: Tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = c
        self.Branch_0 = Branch([("Conv3d_0a_1x1", Unit3D(c_in, b0))])
        self.Branch_1 = Branch([("Conv3d_0a_1x1", Unit3D(c_in, b1a)),
                                ("Conv3d_0b_3x3", Unit3D(b1a, b1b, (3, 3, 3)))])
        self.Branch_2 = Branch([("Conv3d_0a_1x1", Unit3D(c_in, b2a)),
                                ("Conv3d_0b_3x3", Unit3D(b2a, b2b, (3, 3, 3)))])
        self.Branch_3 = Branch([("Conv3d_0b_1x1", Unit3D(c_in, b3))], pool_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


class Logits(nn.Module):
    """(2,7,7) VALID average pool -> 1x1x1 conv to 400 logits -> mean over time."""

    def __init__(self, c_in: int = 1024, classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_0c_1x1 = Unit3D(c_in, classes, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (N, 1024, T', 1, 1)
        x = self.Conv3d_0c_1x1(x)  # (N, 400, T', 1, 1)
        return x.flatten(2).mean(dim=2)  # (N, 400): TF's RGB/inception_i3d/Mean:0


# (name, in, (b0, b1a, b1b, b2a, b2b, b3)) as in the TF graph; a max-pool precedes 4b and 5b.
_MIXED = [
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]
_POOL_BEFORE = {"Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}


class I3D(nn.Module):
    """x: float (N, 3, T, 224, 224) RGB in [-1, 1], T >= 9 -> (N, 400) time-averaged logits."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, c_in, c in _MIXED:
            self.add_module(name, Mixed(c_in, c))
        self.Logits = Logits()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        # NDHWC: oneDNN's 3-D convolutions run ~25% faster on CPU; logits move by ~2e-5 (golden atol 1e-3).
        x = self.Conv3d_1a_7x7(x.contiguous(memory_format=torch.channels_last_3d))  # (N, 64, T/2, 112, 112)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (N, 64, T/2, 56, 56)
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))  # (N, 192, T/2, 56, 56)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # (N, 192, T/2, 28, 28)
        for name, _, _ in _MIXED:
            if name in _POOL_BEFORE:
                x = max_pool_same(x, *_POOL_BEFORE[name])
            x = getattr(self, name)(x)  # ends at (N, 1024, T/8, 7, 7)
        return self.Logits(x)


def check_input(x: torch.Tensor) -> None:
    """Raise a ValueError naming the shape when x is not (N, 3, T>=9, 224, 224)."""
    if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"I3D input must be (N, 3, T, 224, 224), got {tuple(x.shape)}")
    if x.shape[2] < MIN_FRAMES:
        raise ValueError(f"I3D needs at least {MIN_FRAMES} frames per video, got T={x.shape[2]}")


def load_i3d(weights: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu") -> I3D:
    """The pretrained I3D in eval mode; `weights` is a file or folder (see `resolve_weights`)."""
    state = torch.load(resolve_weights(WEIGHTS_NAME, weights), map_location="cpu", weights_only=True)
    model = I3D()
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last_3d)
