"""One small video-reading interface over decord, with errors that name the file.

decord raises bare RuntimeErrors on missing, corrupt or truncated files and can deadlock on a container
that over-reports its frame count, so every decode here runs under a time bound and frames are clamped
to those that actually decode.
"""

from __future__ import annotations

import concurrent.futures as futures
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SIDECAR_EXTENSIONS = (".md", ".txt", ".csv", ".json", ".yaml", ".yml")  # metadata beside videos: ignored


class VideoReadError(Exception):
    """A video that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int
    fps: float
    height: int
    width: int


def _check_path(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(f"{path}: no such file")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoReadError(f"{path}: unsupported extension {path.suffix!r}; valid: {', '.join(VIDEO_EXTENSIONS)}")


def _bounded(fn, path: Path, timeout_s: float):
    """Run a decord call in a worker thread; a hang becomes a VideoReadError instead of a deadlock."""
    pool = futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn).result(timeout=timeout_s)
    except futures.TimeoutError:
        raise VideoReadError(f"{path}: decoding did not finish within {timeout_s:.0f} s") from None
    except (RuntimeError, ValueError, IndexError) as err:
        raise VideoReadError(f"{path}: corrupt or truncated video (decord: {str(err).splitlines()[0][:120]})") from None
    finally:
        pool.shutdown(wait=False)


def _reader(path: Path):
    import decord

    return decord.VideoReader(str(path), num_threads=1)


def probe_video(path: Union[str, Path], *, timeout_s: float = 60.0) -> VideoInfo:
    """Frame count, fps and size as the decoder reports them."""
    path = Path(path)
    _check_path(path)

    def probe():
        vr = _reader(path)
        h, w = vr[0].shape[:2]
        return VideoInfo(str(path), len(vr), float(vr.get_avg_fps()), int(h), int(w))

    return _bounded(probe, path, timeout_s)


def read_video(path: Union[str, Path], indices: Optional[Sequence[int]] = None, *,
               timeout_s: float = 60.0) -> np.ndarray:
    """uint8 frames [T, H, W, 3]; all frames when `indices` is None."""
    path = Path(path)
    _check_path(path)

    def read():
        vr = _reader(path)
        idx = list(range(len(vr))) if indices is None else [int(i) for i in indices]
        if idx and max(idx) >= len(vr):
            raise VideoReadError(f"{path}: has {len(vr)} frames, frame {max(idx)} was asked for")
        return vr.get_batch(idx).asnumpy()

    frames = _bounded(read, path, timeout_s)
    if indices is not None and len(frames) != len(indices):
        raise VideoReadError(f"{path}: decoded {len(frames)} of {len(indices)} frames (truncated?)")
    return frames


def read_frames_folder(folder: Union[str, Path]) -> np.ndarray:
    """uint8 [T, H, W, 3] from a folder of JPEG/PNG frames sorted by name (DAVIS layout)."""
    from PIL import Image

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise VideoReadError(f"{folder}: no JPEG/PNG frames in this folder")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
