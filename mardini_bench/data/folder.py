"""Real videos: a folder of video files (decord) or of frame sequences, as fixed-length clips.

Every file is indexed up front. With `on_error="raise"` the first bad file stops the dataset with a
`VideoReadError` naming it; with `on_error="skip"` bad files are counted in `skipped` (path, reason)
and reported with one warning, and the rest load.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mardini_bench.config import DataConfig
from mardini_bench.data.video_io import (IMAGE_EXTENSIONS, SIDECAR_EXTENSIONS, VIDEO_EXTENSIONS, VideoReadError, probe_video,
                                         read_frames_folder, read_video)


def to_clip(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float (T, 3, size, size) in [0, 1]: centre-crop to square, then resize."""
    T, H, W, _ = frames.shape
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + side, left:left + side])).permute(0, 3, 1, 2)
    x = x.float() / 255
    if side != size:  # area-averaging when shrinking avoids aliasing; bicubic when enlarging
        mode = "area" if side > size else "bicubic"
        x = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return x.clamp(0, 1)


def clip_indices(num_frames: int, native_fps: float, clip_frames: int, target_fps: float | None) -> List[int]:
    """Frame indices of the first clip: stride 1, or the stride that resamples to `target_fps`."""
    stride = max(1, round(native_fps / target_fps)) if target_fps else 1
    return list(range(0, clip_frames * stride, stride))


class _IndexedDataset(Dataset):
    """Shared indexing and error policy for both folder datasets."""

    def __init__(self, cfg: DataConfig, on_error: str):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.cfg, self.on_error = cfg, on_error
        self.items: List[Tuple[Path, List[int]]] = []
        self.skipped: List[Tuple[str, str]] = []

    def _add(self, path: Path, probe) -> None:
        try:
            n, fps = probe(path)
            idx = clip_indices(n, fps, self.cfg.frames, self.cfg.fps)
            if idx[-1] >= n:
                raise VideoReadError(f"{path}: {n} frames, shorter than a {self.cfg.frames}-frame clip "
                                     f"(needs {idx[-1] + 1} at this fps)")
            self.items.append((path, idx))
        except VideoReadError as err:
            if self.on_error == "raise":
                raise
            self.skipped.append((str(path), str(err)))

    def _finish(self, root: Path) -> None:
        if self.skipped:
            warnings.warn(f"{root}: skipped {len(self.skipped)} unreadable file(s), first: {self.skipped[0][1]}")
        if not self.items:
            raise VideoReadError(f"{root}: no usable clips (skipped {len(self.skipped)})")

    def __len__(self) -> int:
        return len(self.items)


class VideoFolderDataset(_IndexedDataset):
    """Every mp4/avi/webm/mov/mkv under `root` (recursive), one clip per file."""

    def __init__(self, cfg: DataConfig, root: str | Path | None = None, on_error: str = "raise"):
        super().__init__(cfg, on_error)
        root = Path(root or cfg.root or "")
        if not root.is_dir():
            raise VideoReadError(f"{root}: not a folder (data.root must name a folder of videos)")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in SIDECAR_EXTENSIONS)
        if not files:
            raise VideoReadError(f"{root}: empty folder")
        for path in files:
            if path.suffix.lower() not in VIDEO_EXTENSIONS:
                err = f"{path}: unsupported extension {path.suffix!r}; valid: {', '.join(VIDEO_EXTENSIONS)}"
                if on_error == "raise":
                    raise VideoReadError(err)
                self.skipped.append((str(path), err))
                continue
            self._add(path, lambda p: (lambda i: (i.frames, i.fps))(probe_video(p)))
        self._finish(root)

    def __getitem__(self, index: int) -> torch.Tensor:
        path, idx = self.items[index]
        return to_clip(read_video(path, idx), self.cfg.resolution)


class FrameFolderDataset(_IndexedDataset):
    """One sub-folder of JPEG/PNG frames per sequence (DAVIS `JPEGImages/480p/<seq>/`)."""

    def __init__(self, cfg: DataConfig, root: str | Path | None = None, on_error: str = "raise",
                 native_fps: float = 24.0):
        super().__init__(cfg, on_error)
        root = Path(root or cfg.root or "")
        seqs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not seqs:
            raise VideoReadError(f"{root}: no sequence folders (expected <root>/<sequence>/<frame>.jpg)")

        def probe(p: Path):
            n = sum(1 for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if n == 0:
                raise VideoReadError(f"{p}: no JPEG/PNG frames in this folder")
            return n, native_fps

        for seq in seqs:
            self._add(seq, probe)
        self._finish(root)

    def __getitem__(self, index: int) -> torch.Tensor:
        path, idx = self.items[index]
        return to_clip(read_frames_folder(path)[idx], self.cfg.resolution)
