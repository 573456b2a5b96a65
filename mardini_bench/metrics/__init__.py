"""Video and image metrics with the protocol attached to every value.

FVD (I3D Kinetics-400, the TF FVD network) and FID (Inception-v3 2015-12-05, clean-fid "clean")
stream features into float64 statistics; PSNR and SSIM are torchmetrics' per-frame scores under the
VIDIM-Bench protocols. Every entry in `METRICS` builds an object with the same small interface:

    metric = METRICS.build("fvd", weights=folder)
    metric.update(real_batch, fake_batch)   # (B, T, 3, H, W), uint8 or float in [0, 1]
    result = metric.compute()               # MetricResult(value, protocol, ci)

Weights are found offline (`mardini_bench.weights.resolve_weights`); nothing here downloads.
"""

from __future__ import annotations

from typing import Any

from mardini_bench.metrics.distribution import FID, FVD, FrechetMetric
from mardini_bench.metrics.info import MetricInfo, is_distribution, metric_info, metric_names
from mardini_bench.metrics.pixel import PairedFrameMetric
from mardini_bench.metrics.result import MetricResult
from mardini_bench.registry import METRICS

__all__ = ["FVD", "FID", "FrechetMetric", "PairedFrameMetric", "MetricResult", "METRICS", "MetricInfo", "metric_info",
           "metric_names", "is_distribution"]


@METRICS.register(name="fvd", meta=MetricInfo("FVD", higher_is_better=False, kind="distribution", scores="clips",
                                              decimals=1))
def build_fvd(**kwargs: Any) -> FVD:
    """FVD; kwargs: weights, resize, ddof, batch_size, device, bootstrap, real_id, cache_dir."""
    return FVD(**kwargs)


@METRICS.register(name="fid", meta=MetricInfo("FID", higher_is_better=False, kind="distribution", scores="frames"))
def build_fid(**kwargs: Any) -> FID:
    """FID; kwargs as for FVD but no resize (clean-fid's "clean" resize is the protocol)."""
    return FID(**kwargs)


@METRICS.register(name="psnr", meta=MetricInfo("PSNR", higher_is_better=True, kind="paired"))
def build_psnr(protocol: str = "all_frames") -> PairedFrameMetric:
    """Per-frame PSNR; protocol all_frames or middle_frame."""
    return PairedFrameMetric("psnr", protocol)


@METRICS.register(name="ssim", meta=MetricInfo("SSIM", higher_is_better=True, kind="paired", decimals=4))
def build_ssim(protocol: str = "all_frames") -> PairedFrameMetric:
    """Per-frame SSIM; protocol all_frames or middle_frame."""
    return PairedFrameMetric("ssim", protocol)
