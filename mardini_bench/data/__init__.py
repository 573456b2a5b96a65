"""Video data: the built-in synthetic clips (the default) and real videos through decord.

Every dataset yields clips as float32 tensors (T, 3, H, W) in [0, 1]. `build_dataset(cfg, split)` is
the one entry point the trainer and evaluator use; datasets are `DATASETS` registry entries built as
`builder(cfg, split, seed=...)`.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from mardini_bench.config import DataConfig
from mardini_bench.data.folder import FrameFolderDataset, VideoFolderDataset
from mardini_bench.data.resident import resident_split
from mardini_bench.data.stats import latent_stats
from mardini_bench.data.synthetic import SyntheticVideos, render_clip
from mardini_bench.data.video_io import (VIDEO_EXTENSIONS, VideoInfo, VideoReadError, probe_video,
                                         read_frames_folder, read_video)
from mardini_bench.registry import DATASETS

__all__ = ["build_dataset", "latent_stats", "resident_split", "SyntheticVideos", "render_clip", "VideoFolderDataset", "FrameFolderDataset",
           "VideoInfo", "VideoReadError", "VIDEO_EXTENSIONS", "probe_video", "read_video", "read_frames_folder"]


@DATASETS.register
def synthetic(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    """Procedural sprite videos; splits are disjoint seed streams."""
    return SyntheticVideos(cfg, split, seed)


# Real folders carry no split structure: point data.root at the split's own folder.
@DATASETS.register
def video_folder(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    """Every video file under data.root."""
    return VideoFolderDataset(cfg)


@DATASETS.register
def frame_folder(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    """One frame sub-folder per sequence under data.root (DAVIS layout)."""
    return FrameFolderDataset(cfg)


def build_dataset(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    """The dataset `cfg.dataset` names, for `split` ("train", "val" or "test")."""
    return DATASETS.build(cfg.dataset, cfg, split, seed=seed)
