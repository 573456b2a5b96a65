"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), v0.1, per frame.

The paper's Table 4 reports it on the middle frame of interpolation (MidF-LPIPS; run with
`eval.protocol=middle_frame`). Two registered metrics: `lpips` (AlexNet, the `lpips` package's
default and the usual reported number) and `lpips_vgg` (VGG-16).

    d(x, y) = sum_l  mean_hw  || w_l * (n(f_l(x)) - n(f_l(y))) ||^2

f_l: the backbone's activations after each of its 5 ReLU stages, on inputs scaled to [-1, 1] and
shifted by the ImageNet statistics `lpips` uses; n: unit norm over channels; w_l: the linear
calibration layer (a 1x1 conv without bias) fitted on human judgements (BAPPS).

Weights, all sha256-pinned, none ever downloaded here:
  * backbones: torchvision's published ImageNet files, found like every weight file
    (`mardini_bench.weights`); `python -m mardini_bench.weights fetch lpips` fetches them;
  * calibration layers: the v0.1 files of the `lpips` package, which torchmetrics (a dependency)
    ships byte-identical inside its wheel, so they are always present.
Inputs are rounded to uint8 like every metric here, and are not resized (unlike FVD/FID), so the
score is at the clips' own resolution.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torchmetrics.functional.image
import torchvision

from mardini_bench.metrics.info import MetricInfo
from mardini_bench.metrics.pixel import PairedFrameMetric
from mardini_bench.registry import METRICS
from mardini_bench.weights import WeightsError, resolve_weights, sha256_file

# The `lpips` package's ScalingLayer: (x - shift) / scale on inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
CALIBRATION_DIR = Path(torchmetrics.functional.image.__file__).parent / "lpips_models"


@dataclass(frozen=True)
class Backbone:
    """One LPIPS network: torchvision's `features` split after each ReLU stage lpips taps."""

    arch: str  # torchvision builder
    weights_file: str  # torchvision's published ImageNet file (in mardini_bench.weights.KNOWN_WEIGHTS)
    splits: Tuple[int, ...]  # `features` indices where each tapped stage ends
    channels: Tuple[int, ...]
    calibration: str  # file in CALIBRATION_DIR
    calibration_sha256: str


BACKBONES: Dict[str, Backbone] = {
    "alex": Backbone("alexnet", "alexnet-owt-7be5be79.pth", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256),
                     "alex.pth", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"),
    "vgg": Backbone("vgg16", "vgg16-397923af.pth", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512),
                    "vgg.pth", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
}


class LPIPSNet(nn.Module):
    """(N, 3, H, W) pairs in [0, 1] -> (N,) LPIPS distances."""

    def __init__(self, backbone: Backbone, features: nn.Sequential, calibration: Dict[str, torch.Tensor]):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        bounds = (0,) + backbone.splits
        self.stages = nn.ModuleList(features[a:b] for a, b in zip(bounds, bounds[1:]))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in backbone.channels)
        for i, lin in enumerate(self.lins):
            lin.weight.data.copy_(calibration[f"lin{i}.model.1.weight"])
        self.requires_grad_(False).eval()

    def taps(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = (x * 2 - 1 - self.shift) / self.scale
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # unit norm over channels
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dist = 0
        for lin, fa, fb in zip(self.lins, self.taps(a), self.taps(b)):
            dist = dist + lin((fa - fb).pow(2)).mean((2, 3))  # (N, 1): spatial average per layer
        return dist[:, 0]


def build_net(net: str, backbone_state: Dict[str, torch.Tensor]) -> LPIPSNet:
    """An LPIPS network from a torchvision state dict of the backbone (`features.*` keys are used)."""
    spec = BACKBONES[net]
    with torch.device("meta"):  # no random init of the (unused, large) classifier
        features = getattr(torchvision.models, spec.arch)(weights=None).features
    features = features.to_empty(device="cpu")
    prefix = "features."
    features.load_state_dict({k[len(prefix):]: v for k, v in backbone_state.items() if k.startswith(prefix)})
    calibration_file = CALIBRATION_DIR / spec.calibration
    digest = sha256_file(calibration_file) if calibration_file.is_file() else "missing"
    if digest != spec.calibration_sha256:
        raise WeightsError(f"LPIPS calibration layers {calibration_file}: sha256 {digest}, expected "
                           f"{spec.calibration_sha256} (the lpips v0.1 file torchmetrics ships); reinstall torchmetrics")
    calibration = torch.load(calibration_file, map_location="cpu", weights_only=True)
    return LPIPSNet(spec, features, calibration)


@functools.lru_cache(maxsize=4)
def _load(net: str, path: Path, device: str = "cpu") -> LPIPSNet:
    """Networks by (backbone, verified file, device): loaded once, however many metrics are built."""
    return build_net(net, torch.load(path, map_location="cpu", weights_only=True)).to(device)


class LPIPS(PairedFrameMetric):
    """Streaming mean of per-frame LPIPS between paired real and generated clips (lower is better).

    Scores frames under the same protocols as PSNR and SSIM (`all_frames`: the mask's frames;
    `middle_frame`: frame T // 2, Table 4's MidF-LPIPS)."""

    def __init__(self, net: str = "alex", weights: Optional[Union[str, Path]] = None, protocol: str = "all_frames",
                 batch_size: int = 64) -> None:
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS backbone {net!r}; valid: {', '.join(BACKBONES)}")
        super().__init__("lpips" if net == "alex" else f"lpips_{net}", protocol)
        self.net_key, self.backbone, self.batch_size = net, BACKBONES[net], batch_size
        self.weights_path = resolve_weights(self.backbone.weights_file, weights)

    @property
    def net(self) -> LPIPSNet:
        return _load(self.net_key, self.weights_path)

    @torch.no_grad()
    def score_frames(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) float64 in [0, 1] -> (M,) float64 distances (the network runs in float32, on the
        frames' device)."""
        net = _load(self.net_key, self.weights_path, str(real.device))
        out = [net(real[i:i + self.batch_size].float(), fake[i:i + self.batch_size].float())
               for i in range(0, len(real), self.batch_size)]
        return torch.cat(out).double()

    def protocol(self) -> Dict[str, Any]:
        spec = self.backbone
        return {**super().protocol(), "implementation": "mardini_bench.lpips (equal to the lpips package, v0.1)",
                "network": f"{spec.arch} features (torchvision ImageNet)", "weights": spec.weights_file,
                "weights_sha256": sha256_file(self.weights_path),
                "detail": f"lpips v0.1 calibration {spec.calibration} (sha256 {spec.calibration_sha256[:12]}), "
                          f"inputs scaled to [-1, 1], no resize"}


# Optional: without the backbone file the metric is skipped with one line, and the run's other metrics
# are unaffected (the file is large, and FVD/FID do not need it).
@METRICS.register(name="lpips", meta=MetricInfo("LPIPS", higher_is_better=False, kind="paired", decimals=4,
                                                optional_weights=True))
def build_lpips(weights: Optional[Union[str, Path]] = None, protocol: str = "all_frames",
                batch_size: int = 64) -> LPIPS:
    """LPIPS v0.1 with the AlexNet backbone; kwargs: weights (folder or file), protocol, batch_size."""
    return LPIPS("alex", weights, protocol, batch_size)


@METRICS.register(name="lpips_vgg", meta=MetricInfo("LPIPS-VGG", higher_is_better=False, kind="paired", decimals=4,
                                                    optional_weights=True))
def build_lpips_vgg(weights: Optional[Union[str, Path]] = None, protocol: str = "all_frames",
                    batch_size: int = 64) -> LPIPS:
    """LPIPS v0.1 with the VGG-16 backbone; kwargs: weights (folder or file), protocol, batch_size."""
    return LPIPS("vgg", weights, protocol, batch_size)
