"""Inception-v3 "2015-12-05" up to pool3: the FID feature network (TTUR, StyleGAN3, clean-fid).

Loaded from `inception_v3_fid_tf2015.pt`, the state dict of the TorchScript that clean-fid and
StyleGAN3 download. Names follow its keys (`net.layers.mixed_4.tower_1.conv_3.weight`) so the load is
strict. Every layer is conv (no bias) -> BN (eps 1e-3, no scale; keys beta/mean/var) -> ReLU.
Input: float (N, 3, 299, 299) = (pixels - 128) / 128; the 299x299 resize happens outside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mardini_bench.weights import resolve_weights

WEIGHTS_NAME = "inception_v3_fid_tf2015.pt"
INPUT_SIZE = 299


class ConvBN(nn.Module):
    """conv -> BN (beta only) -> ReLU with the TF graph's parameter names."""

    def __init__(self, c_in: int, c_out: int, kernel: Union[int, Tuple[int, int]], stride: int = 1,
                 padding: Optional[Union[int, Tuple[int, int]]] = None) -> None:
        super().__init__()
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = (k[0] // 2, k[1] // 2) if padding is None else padding  # stride-1 SAME
        self.weight = nn.Parameter(torch.empty(c_out, c_in, *k))
        self.beta = nn.Parameter(torch.empty(c_out))
        self.register_buffer("mean", torch.empty(c_out))
        self.register_buffer("var", torch.empty(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


class Tower(nn.Module):
    """A chain of ConvBN layers named conv, conv_1, conv_2, ... (a TF name scope)."""

    def __init__(self, specs: Sequence[Tuple]) -> None:
        super().__init__()
        self.names = ["conv"] + [f"conv_{i}" for i in range(1, len(specs))]
        for name, spec in zip(self.names, specs):
            self.add_module(name, ConvBN(*spec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return x


def avg_pool3x3(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real pixels, hence count_include_pad=False.
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class BlockA(nn.Module):
    """Mixed_5b-d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, c_in: int, pool_c: int) -> None:
        super().__init__()
        self.conv = ConvBN(c_in, 64, 1)
        self.tower = Tower([(c_in, 48, 1), (48, 64, 5)])
        self.tower_1 = Tower([(c_in, 64, 1), (64, 96, 3), (96, 96, 3)])
        self.tower_2 = Tower([(c_in, pool_c, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(avg_pool3x3(x))], 1)


class BlockB(nn.Module):
    """Mixed_6a: stride-2 reduction 35 -> 17."""

    def __init__(self, c_in: int = 288) -> None:
        super().__init__()
        self.conv = ConvBN(c_in, 384, 3, stride=2, padding=0)
        self.tower = Tower([(c_in, 64, 1), (64, 96, 3), (96, 96, 3, 2, 0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, 2)], 1)


class BlockC(nn.Module):
    """Mixed_6b-e: factorised 7x7 convolutions."""

    def __init__(self, c: int, c_in: int = 768) -> None:
        super().__init__()
        self.conv = ConvBN(c_in, 192, 1)
        self.tower = Tower([(c_in, c, 1), (c, c, (1, 7)), (c, 192, (7, 1))])
        self.tower_1 = Tower([(c_in, c, 1), (c, c, (7, 1)), (c, c, (1, 7)), (c, c, (7, 1)), (c, 192, (1, 7))])
        self.tower_2 = Tower([(c_in, 192, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(avg_pool3x3(x))], 1)


class BlockD(nn.Module):
    """Mixed_7a: stride-2 reduction 17 -> 8."""

    def __init__(self, c_in: int = 768) -> None:
        super().__init__()
        self.tower = Tower([(c_in, 192, 1), (192, 320, 3, 2, 0)])
        self.tower_1 = Tower([(c_in, 192, 1), (192, 192, (1, 7)), (192, 192, (7, 1)), (192, 192, 3, 2, 0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), F.max_pool2d(x, 3, 2)], 1)


class BlockE(nn.Module):
    """Mixed_7b/c: expanded filter banks; 7c's pool branch is a max-pool (a quirk of the graph)."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.conv = ConvBN(c_in, 320, 1)
        self.tower_conv = ConvBN(c_in, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1))
        self.tower_1_conv = ConvBN(c_in, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1))
        self.tower_2_conv = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else avg_pool3x3(x)
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), self.tower_2_conv(pooled)], 1)


class Layers(nn.Module):
    """The graph body: stem, 11 mixed blocks, 8x8 average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBN(3, 32, 3, stride=2, padding=0)
        self.conv_1 = ConvBN(32, 32, 3, padding=0)
        self.conv_2 = ConvBN(32, 64, 3, padding=1)
        self.conv_3 = ConvBN(64, 80, 1, padding=0)
        self.conv_4 = ConvBN(80, 192, 3, padding=0)
        self.mixed, self.mixed_1, self.mixed_2 = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.mixed_3 = BlockB(288)
        self.mixed_4, self.mixed_5, self.mixed_6, self.mixed_7 = BlockC(128), BlockC(160), BlockC(160), BlockC(192)
        self.mixed_8 = BlockD(768)
        self.mixed_9, self.mixed_10 = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv_2(self.conv_1(self.conv(x))), 3, 2)  # (N, 64, 73, 73)
        x = F.max_pool2d(self.conv_4(self.conv_3(x)), 3, 2)  # (N, 192, 35, 35)
        for name in ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6",
                     "mixed_7", "mixed_8", "mixed_9", "mixed_10"):
            x = getattr(self, name)(x)  # ends at (N, 2048, 8, 8)
        return F.avg_pool2d(x, 8).flatten(1)  # (N, 2048) pool3


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = Layers()


class InceptionV3FID(nn.Module):
    """x: float (N, 3, 299, 299) = (pixels - 128) / 128 -> (N, 2048) pool3 features (>= 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"Inception input must be (N, 3, 299, 299), got {tuple(x.shape)}")
        # NHWC: oneDNN's convolutions run ~35% faster on CPU; features move by ~1e-5 (golden atol 1e-4).
        return self.net.layers(x.contiguous(memory_format=torch.channels_last))


def load_inception(weights: Optional[Union[str, Path]] = None,
                   device: Union[str, torch.device] = "cpu") -> InceptionV3FID:
    """The pretrained FID Inception in eval mode; `weights` is a file or folder."""
    state = torch.load(resolve_weights(WEIGHTS_NAME, weights), map_location="cpu", weights_only=True)
    model = InceptionV3FID()
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
