"""The published StyleGAN-V / fvd-comparison sanity check for FVD (minutes on 2 CPU cores).

Runs only with MARDINI_BENCH_SLOW=1 so CI stays fast."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from mardini_bench.metrics import frechet
from mardini_bench.metrics.i3d import load_i3d

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("MARDINI_BENCH_SLOW") != "1",
                                 reason="several minutes on CPU; set MARDINI_BENCH_SLOW=1")]


def test_stylegan_v_random_videos_fvd(weights_dir):
    """128 vs 128 videos of RandomState(seed).rand(128,16,224,224,3), seeds 1 and 2, fed to I3D
    as-is in [0, 1] (no rescale, no resize), np.cov: published 10.13808 (TF and torchscript)."""
    model = load_i3d(weights_dir)
    stats = []
    for seed in (1, 2):
        data = np.random.RandomState(seed).rand(128, 16, 224, 224, 3)
        s = frechet.FeatureStats(400)
        with torch.no_grad():
            for i in range(0, 128, 8):
                s.update(model(torch.from_numpy(data[i:i + 8]).float().permute(0, 4, 1, 2, 3)))
        stats.append(s)
        del data
    fvd = frechet.frechet_distance(stats[0].mean, stats[0].cov(1), stats[1].mean, stats[1].cov(1))
    assert fvd == pytest.approx(10.1381, abs=1e-4)
