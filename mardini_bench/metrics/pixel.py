"""PSNR and SSIM per frame (torchmetrics), under the VIDIM-Bench protocols.

  * `all_frames`: every generated frame (the frames the task's mask marks True; all frames without
    a mask), one value per frame, averaged over all scored frames;
  * `middle_frame`: only frame T // 2 of each clip (the frame farthest from both references in
    interpolation).
Inputs are rounded to uint8 first (what a saved video holds), then scaled to [0, 1] in float64.
SSIM uses torchmetrics' defaults: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

import mardini_bench
from mardini_bench.metrics.preprocess import as_uint8_btchw
from mardini_bench.metrics.info import MetricInfo
from mardini_bench.metrics.result import MetricResult
from mardini_bench.registry import METRICS

PROTOCOLS = ("all_frames", "middle_frame")


def psnr_frames(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) in [0, 1] -> (M,) PSNR in dB, one per frame."""
    return peak_signal_noise_ratio(fake, real, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim_frames(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) in [0, 1] -> (M,) SSIM, one per frame."""
    return structural_similarity_index_measure(fake, real, data_range=1.0, reduction="none")


_FRAME_FNS = {"psnr": psnr_frames, "ssim": ssim_frames}


class PairedFrameMetric:
    """Streaming mean of a per-frame score between paired real and generated clips (PSNR, SSIM; LPIPS
    subclasses it with its own `score_frames` and `protocol`)."""

    def __init__(self, name: str, protocol: str = "all_frames") -> None:
        if name not in _FRAME_FNS and type(self) is PairedFrameMetric:
            raise ValueError(f"unknown paired metric {name!r}; valid: {', '.join(_FRAME_FNS)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown {name} protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
        self.name, self.frame_protocol = name, protocol
        self.total, self.frames, self.videos = 0.0, 0, 0
        self.shape: Dict[str, Any] = {}

    def update(self, real: Any, fake: Any, mask: Optional[Any] = None) -> List[float]:
        """real, fake: (B, T, 3, H, W) uint8 or float [0, 1], on any device; mask (B, T) bool, True =
        generated. Returns each clip's mean over its scored frames (the values a bootstrap resamples)."""
        real, fake = as_uint8_btchw(real, "real videos"), as_uint8_btchw(fake, "generated videos")
        if real.shape != fake.shape:
            raise ValueError(f"{self.name}: real and generated clips must match, got "
                             f"{tuple(real.shape)} and {tuple(fake.shape)}")
        b = real.shape[0]
        keep = self._scored(b, real.shape[1], mask)  # (B, T) bool, on the CPU
        counts = keep.sum(1).tolist()
        scores = self.score_frames(real[keep.to(real.device)].double() / 255, fake[keep.to(fake.device)].double() / 255)
        clip = torch.arange(b).repeat_interleave(keep.sum(1)).to(scores.device)  # the clip of each scored frame
        sums = torch.zeros(b, dtype=scores.dtype, device=scores.device).index_add_(0, clip, scores).tolist()
        for value in sums:  # clip by clip, as streaming one clip at a time adds them
            self.total += value
        self.frames += sum(counts)
        self.videos += b
        self.shape.setdefault("frames_per_clip", int(real.shape[1]))
        self.shape.setdefault("resolution", [int(real.shape[3]), int(real.shape[4])])
        return [total / n if n else math.nan for total, n in zip(sums, counts)]

    def score_frames(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) float64 in [0, 1] -> (M,) one score per frame (subclasses: other scores)."""
        return _FRAME_FNS[self.name](real, fake)

    def _scored(self, b: int, t: int, mask: Optional[Any]) -> torch.Tensor:
        if self.frame_protocol == "middle_frame":
            keep = torch.zeros(b, t, dtype=torch.bool)
            keep[:, t // 2] = True
            return keep
        if mask is None:
            return torch.ones(b, t, dtype=torch.bool)
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        if tuple(mask.shape) != (b, t):
            raise ValueError(f"{self.name}: mask must be (B, T) = ({b}, {t}), got {tuple(mask.shape)}")
        return mask

    def compute(self) -> MetricResult:
        if self.frames == 0:
            raise ValueError(f"{self.name}: no frames were scored; call update() with clips first")
        return MetricResult(self.total / self.frames, self.protocol())

    def protocol(self) -> Dict[str, Any]:
        detail = {"psnr": "data_range 1.0, per frame over C,H,W",
                  "ssim": "gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, data_range 1.0"}.get(self.name)
        return {"implementation": f"mardini_bench.{self.name} (torchmetrics)", "version": mardini_bench.__version__,
                "metric": self.name, "frame_protocol": self.frame_protocol, "num_videos": self.videos,
                "num_frames_scored": self.frames, **self.shape, "value_range": "[0, 1] (uint8 / 255, float64)",
                "input": "uint8 (float [0,1] rounded to uint8)", "resize": "none",
                "reduction": "mean over scored frames of per-frame values", "detail": detail,
                "middle_frame_index": "T // 2" if self.frame_protocol == "middle_frame" else None}


@METRICS.register(name="psnr", meta=MetricInfo("PSNR", higher_is_better=True, kind="paired"))
def build_psnr(protocol: str = "all_frames") -> PairedFrameMetric:
    """Per-frame PSNR; protocol all_frames or middle_frame."""
    return PairedFrameMetric("psnr", protocol)


@METRICS.register(name="ssim", meta=MetricInfo("SSIM", higher_is_better=True, kind="paired", decimals=4))
def build_ssim(protocol: str = "all_frames") -> PairedFrameMetric:
    """Per-frame SSIM; protocol all_frames or middle_frame."""
    return PairedFrameMetric("ssim", protocol)
