"""Video and image metrics with the protocol attached to every value.

FVD (I3D Kinetics-400, the TF FVD network) and FID (Inception-v3 2015-12-05, clean-fid "clean")
stream features into float64 statistics; PSNR and SSIM are torchmetrics' per-frame scores under the
VIDIM-Bench protocols; LPIPS (v0.1, AlexNet or VGG-16) is per frame too. Every entry in `METRICS` builds an object with the same small interface:

    metric = METRICS.build("fvd", weights=folder)
    metric.update(real_batch, fake_batch)   # (B, T, 3, H, W), uint8 or float in [0, 1]
    result = metric.compute()               # MetricResult(value, protocol, ci)

Weights are found offline (`mardini_bench.weights.resolve_weights`); nothing here downloads.
"""

from __future__ import annotations

# Each family registers its metrics when imported; this order is the tables' column order.
from mardini_bench.metrics.distribution import FID, FVD, FrechetMetric
from mardini_bench.metrics.pixel import PairedFrameMetric
from mardini_bench.metrics.lpips import LPIPS
from mardini_bench.metrics.info import MetricInfo, is_distribution, metric_info, metric_names
from mardini_bench.metrics.result import MetricResult
from mardini_bench.registry import METRICS

__all__ = ["FVD", "FID", "FrechetMetric", "PairedFrameMetric", "LPIPS", "MetricResult", "METRICS", "MetricInfo", "metric_info",
           "metric_names", "is_distribution"]
