"""Minimal decord reader with the signatures of `mardini_bench.data.video_io`, used only when that
module is not importable. Clamps to the frames that actually decode (containers may over-report)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded."""


def _reader(path: Union[str, Path]):
    import decord

    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as err:  # decord raises its own DECORDError and RuntimeError
        raise VideoReadError(f"cannot open video: {err}") from None


def probe_video(path: Union[str, Path]) -> Dict[str, int]:
    """{"num_frames", "height", "width"} from the container (frame count as reported)."""
    reader = _reader(path)
    h, w = reader[0].shape[:2]
    return {"num_frames": len(reader), "height": int(h), "width": int(w)}


def read_video(path: Union[str, Path], indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """uint8 [T, H, W, 3]; indices past the last decodable frame are dropped."""
    reader = _reader(path)
    wanted = list(range(len(reader))) if indices is None else [i for i in indices if i < len(reader)]
    try:
        return reader.get_batch(wanted).asnumpy()
    except Exception as err:
        raise VideoReadError(f"cannot decode frames of {path}: {err}") from None
