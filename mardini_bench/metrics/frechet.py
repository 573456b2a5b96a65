"""Gaussian feature statistics (streamed, float64), the Frechet distance, and bootstrap intervals.

`FeatureStats` merges batches with Chan et al.'s pairwise update (mean and centred scatter
matrix), so memory is O(d^2) whatever the number of videos, and there is no `E[xx^T] - mu mu^T`
cancellation. The covariance convention is explicit: ddof=1 is np.cov (TF FVD, TTUR, clean-fid,
torchmetrics); ddof=0 divides by N (StyleGAN-V `FeatureStats.get_mean_cov`, cd-fvd).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import scipy.linalg

from mardini_bench.io import atomic_write

TRACE_SQRT_METHODS = {
    "auto": "lowrank when one set has fewer vectors than dimensions (its features are then kept), else sqrtm",
    "lowrank": "eigenvalues of the N x N matrix A S A^T, A the centred features of the smaller set (exact)",
    "sqrtm": "scipy.linalg.sqrtm(S1 @ S2), real part of the trace (pytorch-fid, clean-fid, StyleGAN-V)",
    "symmetric": "eigenvalues of sqrt(S1) S2 sqrt(S1), negatives clipped (TF-GAN style; ~5x faster at d=2048)",
}


class FeatureStats:
    """Running mean and centred scatter of feature vectors, in float64.

    Features are kept when `keep_features` (bootstrap, saved feature files), or while fewer than
    `dim` have been seen when `keep_while_rank_deficient`: then they cost less memory than the
    scatter itself and give the exact low-rank Frechet route (`low_rank_features`)."""

    def __init__(self, dim: int, keep_features: bool = False, keep_while_rank_deficient: bool = False) -> None:
        self.dim = dim
        self.n = 0
        self.mean = np.zeros(dim, np.float64)
        self.scatter = np.zeros((dim, dim), np.float64)  # sum of (x - mean)(x - mean)^T
        self.keep_all = keep_features
        self.features: Optional[list] = [] if keep_features or keep_while_rank_deficient else None

    def update(self, feats: Any) -> None:
        """Add a (B, dim) batch (numpy or torch, any float dtype)."""
        x = np.asarray(feats.detach().cpu() if hasattr(feats, "detach") else feats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (B, {self.dim}), got {x.shape}")
        if len(x) == 0:
            return
        if self.features is not None:
            self.features.append(x)
        b_mean = x.mean(axis=0)
        centred = x - b_mean
        delta = b_mean - self.mean
        total = self.n + len(x)
        self.scatter += centred.T @ centred + np.outer(delta, delta) * (self.n * len(x) / total)
        self.mean += delta * (len(x) / total)
        self.n = total
        if self.features is not None and not self.keep_all and self.n >= self.dim:
            self.features = None  # full rank from here on: sqrtm is the cheaper route

    def low_rank_features(self) -> Optional[np.ndarray]:
        """The (N, dim) features when they are kept and N < dim, else None."""
        if self.features is None or self.n >= self.dim or self.n < 2:
            return None
        return np.concatenate(self.features)

    def cov(self, ddof: int = 1) -> np.ndarray:
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
        if self.n - ddof <= 0:
            raise ValueError(f"need more than {ddof} feature vectors for a covariance, got {self.n}")
        return self.scatter / (self.n - ddof)

    def all_features(self) -> np.ndarray:
        if self.features is None:
            raise ValueError("features were not kept; build FeatureStats(keep_features=True)")
        return np.concatenate(self.features) if self.features else np.zeros((0, self.dim))


def gaussian_stats(feats: np.ndarray, ddof: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of a (N, d) feature matrix."""
    feats = np.asarray(feats, np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False, ddof=ddof)


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str = "sqrtm") -> float:
    """tr sqrt(S1 S2), in float64 whatever came in (float32 here moves FID by percents).

    The two methods agree to ~1e-6 relative (golden case); both are exact up to round-off."""
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if method == "symmetric":
        w, v = np.linalg.eigh(s1)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # PSD square root of S1
        m = root @ s2 @ root  # similar to S1 S2, but symmetric
        return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    if method != "sqrtm":
        raise ValueError(f"unknown trace-sqrt method {method!r}; valid: {', '.join(TRACE_SQRT_METHODS)}")
    with warnings.catch_warnings():
        # With N < d the product is singular; sqrtm warns but its trace is still right.
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        raise FloatingPointError("sqrtm(S1 @ S2) is not finite; the covariances are degenerate")
    return float(np.real(np.trace(covmean)))


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray,
                     method: str = "sqrtm") -> float:
    """|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2, method))


def _centred(f: np.ndarray, ddof: int) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, A) with A^T A = covariance: A = (f - mean) / sqrt(n - ddof)."""
    mu = f.mean(axis=0)
    return mu, (f - mu) / np.sqrt(len(f) - ddof)


def frechet_lowrank(f1: Optional[np.ndarray], f2: np.ndarray, ddof: int = 1,
                    fixed1: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> float:
    """Exact Frechet distance without a d x d square root, for N < d (bootstrap resamples).

    With S_i = A_i^T A_i, the non-zero eigenvalues of S1 S2 are the squared singular values of
    A1 A2^T, so tr sqrt(S1 S2) is its nuclear norm; with S1 given as a matrix they are the
    eigenvalues of A2 S1 A2^T. Equal to the sqrtm route within ~1e-6 relative."""
    mu2, a2 = _centred(np.asarray(f2, np.float64), ddof)
    if f1 is None:
        mu1, s1 = fixed1
        m = a2 @ s1 @ a2.T
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
        tr1 = np.trace(s1)
    else:
        mu1, a1 = _centred(np.asarray(f1, np.float64), ddof)
        tr_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
        tr1 = (a1 * a1).sum()
    diff = mu1 - mu2
    return float(diff @ diff + tr1 + (a2 * a2).sum() - 2.0 * tr_sqrt)


class SubsetFrechet:
    """Exact Frechet distance between the same rows of two paired feature sets, for N < d.

    Bootstrap replicates draw row subsets (with repeats) many times; from the Gram matrices
    K_ab = F_a F_b^T, computed once, each replicate costs O(n^2) plus an n x n SVD, instead of
    re-centring n x d features: with H the centring matrix, A1 A2^T = H K12[R, R] H / (n - ddof)."""

    def __init__(self, real: np.ndarray, fake: np.ndarray, ddof: int = 1) -> None:
        real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
        if real.shape != fake.shape:
            raise ValueError(f"paired feature sets must have one shape, got {real.shape} and {fake.shape}")
        self.ddof = ddof
        self.k11, self.k22, self.k12 = real @ real.T, fake @ fake.T, real @ fake.T

    def __call__(self, rows: np.ndarray) -> float:
        grid = np.ix_(rows, rows)
        k11, k22, k12 = self.k11[grid], self.k22[grid], self.k12[grid]
        n, scale = len(rows), len(rows) - self.ddof
        mean_sq = (k11.sum() + k22.sum() - 2.0 * k12.sum()) / n**2  # |mu1 - mu2|^2
        tr1, tr2 = (np.trace(k11) - k11.sum() / n) / scale, (np.trace(k22) - k22.sum() / n) / scale
        centred = k12 - k12.mean(0) - k12.mean(1)[:, None] + k12.mean()
        tr_sqrt = np.linalg.svd(centred, compute_uv=False).sum() / scale
        return float(mean_sq + tr1 + tr2 - 2.0 * tr_sqrt)


def bootstrap_ci(f1: Optional[np.ndarray], f2: np.ndarray, n_boot: int, ddof: int = 1,
                 level: float = 0.95, seed: int = 0,
                 fixed1: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Tuple[float, float]:
    """Percentile interval of the Frechet distance, resampling videos with replacement.

    Both sets are resampled independently. When the first set is known only by its statistics
    (a cached real set: pass f1=None and fixed1=(mu, cov)), it is held fixed."""
    if n_boot < 1:
        raise ValueError(f"bootstrap needs at least 1 resample, got {n_boot}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        a = None if f1 is None else f1[rng.integers(0, len(f1), len(f1))]
        b = f2[rng.integers(0, len(f2), len(f2))]
        values.append(frechet_lowrank(a, b, ddof, fixed1))
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------------------------
# On-disk cache of real-set statistics
# ----------------------------------------------------------------------------------------------
def default_stats_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mardini_bench" / "stats"


def stats_key(dataset_id: str, protocol: Dict[str, Any]) -> str:
    """Cache key: the dataset id plus every protocol field that changes the features."""
    blob = json.dumps({"dataset": dataset_id, "protocol": protocol}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def save_stats(path: Union[str, Path], stats: FeatureStats, meta: Dict[str, Any]) -> None:
    """Write mean/scatter/n atomically (`io.atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, mean=stats.mean, scatter=stats.scatter, n=stats.n,
                                          meta=json.dumps(meta, default=str)))


def load_stats(path: Union[str, Path]) -> Tuple[FeatureStats, Dict[str, Any]]:
    with np.load(path) as data:
        stats = FeatureStats(int(data["mean"].shape[0]))
        stats.mean, stats.scatter, stats.n = data["mean"], data["scatter"], int(data["n"])
        return stats, json.loads(str(data["meta"]))
