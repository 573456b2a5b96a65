"""Saved samples (`samples.npz`, written by `run.evaluate.save_samples`) read back and rendered as
animations: per frame, the clips side by side, upscaled, with a red border on generated frames and a
green one on given frames. The sweep report's GIFs and the long-video demo's GIF and MP4 both come from
here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mardini_bench.io import atomic_file


def load_samples(path: Path) -> Dict[str, np.ndarray]:
    """samples.npz as uint8 (N, T, H, W, 3) clips (`input`, `output`, `real` when saved) plus a (N, T) mask
    (1 = generated frame)."""
    with np.load(path) as data:
        clips = {k: _nthwc(data[k]) for k in ("input", "output", "real") if k in data}
        mask = np.asarray(data["mask"]) if "mask" in data else np.zeros(clips["output"].shape[:2])
    if mask.ndim > 2:  # a per-pixel mask: a frame counts as generated if any of it is
        mask = mask.reshape(*mask.shape[:2], -1).max(-1)
    return {**clips, "mask": mask.astype(bool)}


def _nthwc(x: np.ndarray) -> np.ndarray:
    if x.ndim == 4:
        x = x[..., None]
    if x.shape[2] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 1, 3, 4, 2)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def sample_frames(samples: Dict[str, np.ndarray], videos: int = 3, scale: int = 4,
                  kinds: Sequence[str] = ("input", "output")) -> List[np.ndarray]:
    """Per frame, one (H, W, 3) uint8 image: the `kinds` of each clip side by side, upscaled `scale`x;
    red border = generated frame, green = given."""
    n, t = min(videos, len(samples["output"])), samples["output"].shape[1]
    return [np.concatenate([_bordered(samples[k][v, f], samples["mask"][v, f], scale)
                            for v in range(n) for k in kinds if k in samples], axis=1) for f in range(t)]


def sample_gif(samples: Dict[str, np.ndarray], path: Path, videos: int = 3, scale: int = 4, fps: float = 4.0,
               kinds: Sequence[str] = ("input", "output")) -> Path:
    """Animated GIF of `sample_frames`, looping."""
    frames = [Image.fromarray(f) for f in sample_frames(samples, videos, scale, kinds)]
    with atomic_file(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return path


def sample_mp4(samples: Dict[str, np.ndarray], path: Path, videos: int = 3, scale: int = 4, fps: int = 4,
               kinds: Sequence[str] = ("input", "output")) -> Path:
    """H.264 MP4 of `sample_frames`. Needs PyAV: ModuleNotFoundError (name 'av') in an environment
    installed before it became a dependency (`pip install av`)."""
    import av

    frames = sample_frames(samples, videos, scale, kinds)
    with atomic_file(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]  # even: tiles are `scale`x a frame, scale 4
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "18"}  # yuv420p: what every player decodes
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())  # flush the encoder's delayed frames
    return path


def _bordered(frame: np.ndarray, generated: bool, scale: int) -> np.ndarray:
    img = Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.NEAREST)
    ImageDraw.Draw(img).rectangle([0, 0, img.width - 1, img.height - 1],
                                  outline=(220, 30, 30) if generated else (30, 160, 60), width=2)
    return np.asarray(img)
