"""Video data: the built-in synthetic clips (the default) and real videos through decord.

Every dataset yields clips as float32 tensors (T, 3, H, W) in [0, 1]. `build_dataset(cfg, split)` is
the one entry point the trainer and evaluator use; datasets are `DATASETS` registry entries.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from mardini_bench.config import DataConfig
from mardini_bench.data.folder import FrameFolderDataset, VideoFolderDataset
from mardini_bench.data.synthetic import SyntheticVideos
from mardini_bench.data.video_io import VideoInfo, VideoReadError, probe_video, read_video
from mardini_bench.registry import DATASETS

__all__ = ["build_dataset", "SyntheticVideos", "VideoFolderDataset", "FrameFolderDataset", "VideoInfo",
           "VideoReadError", "probe_video", "read_video"]


@DATASETS.register
def synthetic(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    return SyntheticVideos(cfg, split, seed)


@DATASETS.register
def video_folder(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    # Real folders have no split structure: point data.root at the split's own folder.
    return VideoFolderDataset(cfg)


@DATASETS.register
def frame_folder(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    return FrameFolderDataset(cfg)


def build_dataset(cfg: DataConfig, split: str, seed: int = 0) -> Dataset:
    return DATASETS.build(cfg.dataset, cfg, split, seed=seed)
