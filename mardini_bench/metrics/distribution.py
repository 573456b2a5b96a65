"""FVD and FID: streamed feature passes, float64 statistics, protocol on every value.

    fvd = FVD(weights="/path/to/weights")          # or MARDINI_BENCH_WEIGHTS
    for real, fake in loader:                       # (B, T, 3, H, W) uint8 or float [0, 1]
        fvd.update(real, fake)
    result = fvd.compute()                          # MetricResult(value, protocol, ci)

Only running statistics are kept (O(d^2) memory, whatever the number of videos). Features are
kept in memory only when a bootstrap interval is asked for (N x 400 or N x 2048 floats).
With `real_id`, the real set's statistics are cached on disk under a key made of that id and every
protocol field that changes the features; later runs skip the real pass.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import numpy as np
import torch

import mardini_bench
from mardini_bench.metrics import frechet
from mardini_bench.metrics.frechet import FeatureStats
from mardini_bench.metrics.i3d import load_i3d
from mardini_bench.metrics.inception import load_inception
from mardini_bench.metrics.info import MetricInfo
from mardini_bench.metrics.preprocess import I3D_RESIZES, as_uint8_btchw, i3d_input, inception_input
from mardini_bench.metrics.result import MetricResult
from mardini_bench.registry import METRICS
from mardini_bench.weights import resolve_weights, sha256_file

PathLike = Union[str, Path]


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """IEEE fp32 convolutions and matmuls inside (no TF32 on Ampere and later): the feature networks must
    give the reference implementations' features, and TF32 moves I3D logits by about 1e-3."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


class FrechetMetric:
    """Shared streaming/caching logic; subclasses define the network and its preprocessing."""

    name = ""
    weights_name = ""
    dim = 0
    item_bytes = 0  # device memory one input item takes in the network (sizes batches by free memory)

    def __init__(self, weights: Optional[PathLike] = None, ddof: int = 1, batch_size: int = 8,
                 device: Union[str, torch.device] = "cpu", bootstrap: int = 0, seed: int = 0,
                 real_id: Optional[str] = None, cache_dir: Optional[PathLike] = None,
                 trace_sqrt: str = "auto", keep_features: bool = False) -> None:
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 (divide by N) or 1 (np.cov), got {ddof!r}")
        if trace_sqrt not in frechet.TRACE_SQRT_METHODS:
            raise ValueError(f"unknown trace_sqrt {trace_sqrt!r}; valid: {', '.join(frechet.TRACE_SQRT_METHODS)}")
        self.trace_sqrt = trace_sqrt
        self.weights_path = resolve_weights(self.weights_name, weights)  # fails early, offline
        self.ddof, self.batch_size, self.device = ddof, batch_size, torch.device(device)
        self.bootstrap, self.seed = bootstrap, seed
        keep, low_rank = keep_features or bootstrap > 0, trace_sqrt in ("auto", "lowrank")
        self.real = FeatureStats(self.dim, keep_features=keep, keep_while_rank_deficient=low_rank)
        self.fake = FeatureStats(self.dim, keep_features=keep, keep_while_rank_deficient=low_rank)
        self.real_id, self.cache_dir = real_id, Path(cache_dir) if cache_dir else frechet.default_stats_dir()
        self.real_cached = False
        self.shape: Dict[str, Any] = {}  # frames / input resolution seen, for the protocol
        self._net: Optional[torch.nn.Module] = None
        self._looked_up = False

    # -- subclass hooks ----------------------------------------------------------------------
    def _build_net(self) -> torch.nn.Module:
        raise NotImplementedError

    def _net_inputs(self, videos: torch.Tensor) -> Iterator[torch.Tensor]:
        """uint8 (B, T, 3, H, W) -> network input batches of at most `batch_size`."""
        raise NotImplementedError

    def feature_protocol(self) -> Dict[str, Any]:
        """Everything that changes a feature vector (the real-stats cache key uses it)."""
        return {"implementation": f"mardini_bench.{self.name}", "version": mardini_bench.__version__,
                "weights": self.weights_name, "weights_sha256": sha256_file(self.weights_path),
                "frames": self.shape.get("frames")}

    # -- streaming -----------------------------------------------------------------------------
    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            self._net = self._build_net()
        return self._net

    @net.setter
    def net(self, module: torch.nn.Module) -> None:
        """Share an already loaded feature network (one evaluation builds many metrics)."""
        self._net = module

    def update(self, real: Any = None, fake: Any = None, mask: Any = None) -> None:
        """Add a batch of real and/or fake videos (B, T, 3, H, W), uint8 or float in [0, 1].

        `mask` is accepted for a common signature with PSNR/SSIM and ignored: a distribution
        metric scores whole clips."""
        if real is not None:
            self._update("real", real)
        if fake is not None:
            self._update("fake", fake)

    def _as_videos(self, batch: Any) -> torch.Tensor:
        return as_uint8_btchw(batch)

    @torch.no_grad()
    def _update(self, label: str, batch: Any) -> None:
        videos = self._as_videos(batch)  # (B, T, 3, H, W) uint8
        self._check_shape("frames", int(videos.shape[1]))
        if self.real_id is not None and not self._looked_up:
            self._load_cached_real()  # the key needs the frame count, known from the first batch
        if label == "real" and self.real_cached:
            return
        self._check_shape(f"input_resolution_{label}", [int(videos.shape[3]), int(videos.shape[4])])
        stats = self.real if label == "real" else self.fake
        with exact_fp32():
            for x in self._net_inputs(videos.to(self.device)):
                stats.update(self.net(x.to(self.device)).double().cpu())

    def add_features(self, label: str, feats: Any, frames: int, input_resolution: Any) -> None:
        """Add precomputed (B, dim) features of `label` ("real"/"fake") clips, e.g. a real set whose
        features were computed once and saved; `frames` and `input_resolution` are what the
        network saw, for the protocol."""
        if label not in ("real", "fake"):
            raise ValueError(f"label must be 'real' or 'fake', got {label!r}")
        self._check_shape("frames", int(frames))
        self._check_shape(f"input_resolution_{label}", [int(v) for v in input_resolution])
        (self.real if label == "real" else self.fake).update(feats)

    def _check_shape(self, key: str, value: Any) -> None:
        if self.shape.setdefault(key, value) != value:
            raise ValueError(f"{self.name}: all videos must have the same {key.replace('_', ' ')}; "
                             f"got {value} after {self.shape[key]}")

    # -- results -------------------------------------------------------------------------------
    def protocol(self) -> Dict[str, Any]:
        return {**self.feature_protocol(), "metric": self.name, **self.shape,
                "num_real": self.real.n, "num_fake": self.fake.n,
                "real_stats": "cached" if self.real_cached else "computed",
                "statistics": "float64", "covariance_ddof": self.ddof,
                "covariance": "np.cov (divide by N-1)" if self.ddof == 1 else "divide by N (StyleGAN-V, cd-fvd)",
                "trace_sqrt": self.trace_sqrt}

    def compute(self) -> MetricResult:
        """The Frechet distance between the real and fake sets seen so far."""
        for label, stats in (("real", self.real), ("fake", self.fake)):
            if stats.n < 2:
                raise ValueError(f"{self.name}: need at least 2 {label} samples, got {stats.n}")
        if self.real_id is not None and not self.real_cached:
            self._save_cached_real()
        mu1, s1 = self.real.mean, self.real.cov(self.ddof)
        value, method = self._distance(mu1, s1)
        ci = self._bootstrap(mu1, s1) if self.bootstrap else None
        protocol = {**self.protocol(), "trace_sqrt": method, "trace_sqrt_detail": frechet.TRACE_SQRT_METHODS[method]}
        if ci is not None:
            protocol["ci"] = {"method": "percentile bootstrap over samples", "resamples": self.bootstrap,
                              "level": 0.95, "seed": self.seed,
                              "real_resampled": not self.real_cached}
        return MetricResult(value, protocol, ci)

    def _distance(self, mu1: np.ndarray, s1: np.ndarray) -> tuple:
        """(value, method used). The routes agree to ~1e-6 relative; "auto" picks the cheap exact one."""
        mu2, s2 = self.fake.mean, self.fake.cov(self.ddof)
        method = self.trace_sqrt
        if method in ("auto", "lowrank"):
            # Frechet distance is symmetric: factor whichever set has fewer vectors than dimensions.
            for feats, fixed in ((self.fake.low_rank_features(), (mu1, s1)),
                                 (self.real.low_rank_features(), (mu2, s2))):
                if feats is not None:
                    return frechet.frechet_lowrank(None, feats, self.ddof, fixed1=fixed), "lowrank"
            if method == "lowrank":
                raise ValueError(f"{self.name}: trace_sqrt='lowrank' needs one set with kept features and "
                                 f"fewer than {self.dim} vectors; use 'auto' or 'sqrtm'")
            method = "sqrtm"
        return frechet.frechet_distance(mu1, s1, mu2, s2, method), method

    def _bootstrap(self, mu1: np.ndarray, s1: np.ndarray) -> tuple:
        real = None if self.real_cached else self.real.all_features()
        return frechet.bootstrap_ci(real, self.fake.all_features(), self.bootstrap, self.ddof,
                                    seed=self.seed, fixed1=(mu1, s1))

    # -- real-set cache ------------------------------------------------------------------------
    def cache_path(self) -> Path:
        return self.cache_dir / f"{self.name}_{frechet.stats_key(self.real_id, self.feature_protocol())}.npz"

    def _load_cached_real(self) -> None:
        self._looked_up = True
        path = self.cache_path()
        if path.is_file():
            self.real, meta = frechet.load_stats(path)
            self.shape["input_resolution_real"] = meta.get("shape", {}).get("input_resolution_real")
            self.real_cached = True

    def _save_cached_real(self) -> None:
        meta = {"real_id": self.real_id, "protocol": self.feature_protocol(), "shape": self.shape}
        frechet.save_stats(self.cache_path(), self.real, meta)


class FVD(FrechetMetric):
    """Frechet Video Distance on I3D Kinetics-400 logits (the tf.hub network of TF FVD)."""

    name = "fvd"
    weights_name = "i3d_kinetics400_tfhub.pt"
    dim = 400
    item_bytes = 96 * 2 ** 20  # a 9-frame 224x224 clip: the activations of I3D's first blocks, with margin

    def __init__(self, *args: Any, resize: str = "torch_bilinear", **kwargs: Any) -> None:
        if resize not in I3D_RESIZES:
            raise ValueError(f"unknown FVD resize {resize!r}; valid: {', '.join(I3D_RESIZES)}")
        self.resize = resize
        super().__init__(*args, **kwargs)

    def _build_net(self) -> torch.nn.Module:
        return load_i3d(self.weights_path, self.device)

    def feature_protocol(self) -> Dict[str, Any]:
        return {**super().feature_protocol(), "network": "I3D RGB Kinetics-400 (tf.hub deepmind/i3d-kinetics-400/1)",
                "features": "400 pre-softmax logits, mean over time", "resolution": [224, 224],
                "value_range": "[-1, 1] (pixel / 255 * 2 - 1)", "input": "uint8 (float [0,1] rounded to uint8)",
                "resize": self.resize, "resize_detail": _RESIZE_DETAIL[self.resize]}

    def _net_inputs(self, videos: torch.Tensor) -> Iterator[torch.Tensor]:
        for i in range(0, len(videos), self.batch_size):
            yield i3d_input(videos[i:i + self.batch_size], self.resize)


class FID(FrechetMetric):
    """Frechet Inception Distance, clean-fid "clean" protocol; video frames are pooled as images."""

    name = "fid"
    weights_name = "inception_v3_fid_tf2015.pt"
    dim = 2048
    item_bytes = 24 * 2 ** 20  # a 299x299 image through Inception-v3, with margin

    def __init__(self, *args: Any, batch_size: int = 32, resize_threads: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, batch_size=batch_size, **kwargs)
        self.resize_threads = resize_threads  # PIL resizes release the GIL: threads scale with cores

    def _build_net(self) -> torch.nn.Module:
        return load_inception(self.weights_path, self.device)

    def feature_protocol(self) -> Dict[str, Any]:
        return {**super().feature_protocol(), "network": "Inception-v3 2015-12-05 pool3",
                "features": "2048-d pool3", "resolution": [299, 299],
                "value_range": "(pixel - 128) / 128", "input": "uint8 (float [0,1] rounded to uint8)",
                "resize": "clean", "resize_detail": "clean-fid 'clean': per-channel float PIL bicubic, clip 0..255"}

    def _as_videos(self, batch: Any) -> torch.Tensor:
        x = torch.as_tensor(batch)
        return as_uint8_btchw(x[:, None] if x.ndim == 4 else x, "images or videos")  # image = 1 frame

    def _net_inputs(self, videos: torch.Tensor) -> Iterator[torch.Tensor]:
        images = videos.flatten(0, 1)  # the frames of all videos, pooled as images
        for i in range(0, len(images), self.batch_size):
            yield inception_input(images[i:i + self.batch_size], self.resize_threads)


_RESIZE_DETAIL = {
    "torch_bilinear": "F.interpolate bilinear, align_corners=False, antialias=False, on 0..255 floats",
    "tf1_bilinear": "TF1 resize_bilinear (no half-pixel centres), the original TF FVD preprocess",
    "none": "no resize (frames already 224x224)",
}


@METRICS.register(name="fvd", meta=MetricInfo("FVD", higher_is_better=False, kind="distribution", scores="clips",
                                              decimals=1))
def build_fvd(**kwargs: Any) -> FVD:
    """FVD; kwargs: weights, resize, ddof, batch_size, device, bootstrap, real_id, cache_dir."""
    return FVD(**kwargs)


@METRICS.register(name="fid", meta=MetricInfo("FID", higher_is_better=False, kind="distribution", scores="frames"))
def build_fid(**kwargs: Any) -> FID:
    """FID; kwargs as for FVD but no resize (clean-fid's "clean" resize is the protocol)."""
    return FID(**kwargs)
