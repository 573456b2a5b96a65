"""Real videos: a folder of video files (decord) or of frame sequences, as fixed-length clips.

Every file is indexed up front: probed, and the last frame each clip needs decoded, so a truncated
file fails here rather than in the middle of training. With `on_error="raise"` the first bad file
stops the dataset with a `VideoReadError` naming it; with `on_error="skip"` bad files are listed in
`skipped` as (path, reason), reported with one warning, and the rest load.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mardini_bench.config import DataConfig
from mardini_bench.data.video_io import (SIDECAR_EXTENSIONS, VIDEO_EXTENSIONS, VideoReadError, frame_files,
                                         probe_video, read_frames_folder, read_video)

ON_ERROR = ("raise", "skip")
PathLike = Union[str, Path]


def to_clip(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float (T, 3, size, size) in [0, 1]: centre-crop to square, then resize."""
    T, H, W, _ = frames.shape
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + side, left:left + side])).permute(0, 3, 1, 2)
    x = x.float() / 255
    if side > size:  # area averaging when shrinking avoids aliasing
        x = F.interpolate(x, size=(size, size), mode="area")
    elif side < size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).contiguous()


def frame_step(native_fps: float, cfg: DataConfig) -> int:
    """Source frames between clip frames: resample to `cfg.fps` if set, else `cfg.frame_stride`."""
    if cfg.fps is not None:
        if cfg.fps <= 0:
            raise ValueError(f"data.fps must be > 0 (or None for the native rate), got {cfg.fps}")
        return max(1, round(native_fps / cfg.fps))
    if cfg.frame_stride < 1:
        raise ValueError(f"data.frame_stride must be >= 1, got {cfg.frame_stride}")
    return cfg.frame_stride


def clip_indices(num_frames: int, step: int, clip_frames: int, clips: int) -> List[List[int]]:
    """Frame indices of non-overlapping clips from the start of a video; `clips=0` = all that fit."""
    span = (clip_frames - 1) * step + 1
    fit = (num_frames - span) // (clip_frames * step) + 1 if num_frames >= span else 0
    count = fit if clips == 0 else min(clips, fit)
    return [list(range(c * clip_frames * step, c * clip_frames * step + span, step)) for c in range(count)]


class _IndexedDataset(Dataset):
    """Shared indexing and error policy for both folder datasets."""

    def __init__(self, cfg: DataConfig, root: Optional[PathLike], on_error: Optional[str]):
        self.on_error = on_error or cfg.on_error
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}")
        if cfg.clips_per_video < 0:
            raise ValueError(f"data.clips_per_video must be >= 0 (0 = all), got {cfg.clips_per_video}")
        self.cfg = cfg
        self.root = Path(root or cfg.root or "")
        self.items: List[Tuple[Path, List[int]]] = []
        self.skipped: List[Tuple[str, str]] = []

    def _fail(self, path: Path, err: VideoReadError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped.append((str(path), str(err)))

    def _add(self, path: Path, probe: Callable[[Path], Tuple[int, float]],
             verify: Callable[[Path, int], object]) -> None:
        """Index the clips of one file, or record why it is unusable."""
        try:
            n, fps = probe(path)
            step = frame_step(fps, self.cfg)
            clips = clip_indices(n, step, self.cfg.frames, self.cfg.clips_per_video)
            if not clips:
                raise VideoReadError(f"{path}: too short: {n} frames, a {self.cfg.frames}-frame clip at "
                                     f"frame step {step} needs {(self.cfg.frames - 1) * step + 1}")
            verify(path, clips[-1][-1])  # the last frame any clip needs must really decode
        except VideoReadError as err:
            return self._fail(path, err)
        self.items.extend((path, idx) for idx in clips)

    def _finish(self) -> None:
        if self.skipped:
            warnings.warn(f"{self.root}: skipped {len(self.skipped)} unusable file(s); first: {self.skipped[0][1]}",
                          stacklevel=3)
        if not self.items:
            raise VideoReadError(f"{self.root}: no usable clips ({len(self.skipped)} file(s) skipped)")

    def __len__(self) -> int:
        return len(self.items)


def video_files(root: Path) -> List[Path]:
    """Every non-hidden file under `root` (recursive) except metadata sidecars, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() not in SIDECAR_EXTENSIONS)


class VideoFolderDataset(_IndexedDataset):
    """Every mp4/avi/webm/mov/mkv under `root` (recursive) as clips of `cfg.frames` frames."""

    def __init__(self, cfg: DataConfig, root: Optional[PathLike] = None, on_error: Optional[str] = None):
        super().__init__(cfg, root, on_error)
        if not self.root.is_dir():
            raise VideoReadError(f"{self.root}: no such folder (data.root must name a folder of videos)")
        files = video_files(self.root)
        if not files:
            raise VideoReadError(f"{self.root}: empty folder (no video files)")
        for path in files:
            if path.suffix.lower() not in VIDEO_EXTENSIONS:
                self._fail(path, VideoReadError(f"{path}: unsupported extension {path.suffix!r}; "
                                                f"valid: {', '.join(VIDEO_EXTENSIONS)}"))
                continue
            self._add(path, _probe_file, lambda p, i: read_video(p, [i]))
        self._finish()

    def __getitem__(self, index: int) -> torch.Tensor:
        path, idx = self.items[index]
        return to_clip(read_video(path, idx), self.cfg.resolution)


def _probe_file(path: Path) -> Tuple[int, float]:
    info = probe_video(path)
    return info.frames, info.fps


class FrameFolderDataset(_IndexedDataset):
    """One sub-folder of JPEG/PNG frames per sequence (DAVIS `JPEGImages/480p/<seq>/`).

    Frame folders carry no frame rate: `native_fps` (DAVIS: 24) is what `cfg.fps` resamples from.
    """

    def __init__(self, cfg: DataConfig, root: Optional[PathLike] = None, on_error: Optional[str] = None,
                 native_fps: float = 24.0):
        super().__init__(cfg, root, on_error)
        seqs = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        if not seqs:
            raise VideoReadError(f"{self.root}: no sequence folders (expected <root>/<sequence>/<frame>.jpg)")
        for seq in seqs:
            self._add(seq, lambda p: (len(frame_files(p)), native_fps), lambda p, i: read_frames_folder(p, [i]))
        self._finish()

    def __getitem__(self, index: int) -> torch.Tensor:
        path, idx = self.items[index]
        return to_clip(read_frames_folder(path, idx), self.cfg.resolution)
