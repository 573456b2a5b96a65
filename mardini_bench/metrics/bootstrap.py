"""The bootstrap over clips: a metric's evidence as a function of resampled clip indices, and the paired
two-level bootstrap that compares two methods scored on the same clips.

PSNR/SSIM resample per-clip values; FVD/FID recompute the Frechet distance on the saved features of the
resampled clips. `analysis.significance` builds its sweep comparisons on these; the long-video demo
tests its model against its baseline with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from mardini_bench.metrics.frechet import SubsetFrechet, frechet_distance, frechet_lowrank, gaussian_stats

# A run's evidence for one metric: a function of resampled video indices -> metric value.
Scorer = Callable[[np.ndarray], float]


def per_video_scorer(per_video: Sequence[float]) -> Scorer:
    """The mean of the chosen clips' values (NaN clips left out)."""
    values = np.asarray(per_video, dtype=float)
    return lambda idx: float(np.nanmean(values[idx]))


def frechet_scorer(npz_path: Path, ddof: int) -> Scorer:
    """FD of the chosen videos' features; rows belong to videos through `video_index`.

    The real set is resampled with the fake one (same clips) when its features were saved (`real`);
    when only its statistics were (`real_mu`, `real_cov`: a cached real set) it is held fixed."""
    with np.load(npz_path) as data:
        fake = data["fake"].astype(np.float64)
        real = data["real"].astype(np.float64) if "real" in data else None
        fixed = (data["real_mu"], data["real_cov"]) if real is None else None
        owner = data["video_index"] if "video_index" in data else np.arange(len(fake))
    rows_of = [np.flatnonzero(owner == v) for v in range(int(owner.max()) + 1)]
    # N < d: exact low-rank routes, no d x d sqrtm; with both sets, from Gram matrices made once
    subset = SubsetFrechet(real, fake, ddof) if real is not None and len(fake) < fake.shape[1] else None

    def score(idx: np.ndarray) -> float:
        rows = np.concatenate([rows_of[i] for i in idx])
        if subset is not None:
            return subset(rows)
        if len(rows) < fake.shape[1]:
            return frechet_lowrank(None, fake[rows], ddof, fixed)
        real_stats = fixed if real is None else gaussian_stats(real[rows], ddof)
        return frechet_distance(*real_stats, *gaussian_stats(fake[rows], ddof))
    score.num_videos = len(rows_of)  # type: ignore[attr-defined]
    return score


def paired_bootstrap(runs_a: List[Scorer], runs_b: List[Scorer], num_videos: int, n_boot: int = 500,
                     rng: Optional[np.random.Generator] = None) -> Dict[str, float]:
    """Two-level bootstrap of mean(B) - mean(A): seeds resampled per variant, videos shared (paired).

    Returns observed means, delta, its 95% percentile interval and a two-sided bootstrap p-value.
    """
    rng = rng or np.random.default_rng(0)
    everything = np.arange(num_videos)
    mean_a = float(np.mean([s(everything) for s in runs_a]))
    mean_b = float(np.mean([s(everything) for s in runs_b]))
    deltas = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, num_videos, num_videos)
        pick_a = rng.integers(0, len(runs_a), len(runs_a))
        pick_b = rng.integers(0, len(runs_b), len(runs_b))
        score_a = [runs_a[j](idx) for j in np.unique(pick_a)]
        score_b = [runs_b[j](idx) for j in np.unique(pick_b)]
        # weight each unique seed by how often it was drawn, so a seed scores once per replicate
        deltas[i] = (np.average(score_b, weights=np.bincount(pick_b)[np.unique(pick_b)])
                     - np.average(score_a, weights=np.bincount(pick_a)[np.unique(pick_a)]))
    p = min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"mean_a": mean_a, "mean_b": mean_b, "delta": mean_b - mean_a, "ci_low": float(low),
            "ci_high": float(high), "p_value": float(p)}
