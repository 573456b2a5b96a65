"""Built-in procedural video dataset: the default, needing no download.

Each clip is a scrolling textured background with several textured sprites (discs, squares,
triangles) that move with their own velocity, bounce off the frame edges, rotate, and occlude one
another in a fixed depth order. That gives the temporal structure the tasks need: motion to
interpolate, occlusions to resolve, and a moving background to extrapolate.

Clip `i` of a split is a pure function of (seed, split, i), so every split is deterministic and
train/val/test never share a clip. Rendering is vectorised over frames and pixels; the only Python
loop is over the few sprites.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

from mardini_bench.config import DataConfig

SPLITS = ("train", "val", "test")


# Rendering uses numpy: single-threaded with little per-op overhead, so data generation never
# competes with the training step for torch's intra-op threads (on 2 cores that made it 15x slower).
def _reflect(x: np.ndarray) -> np.ndarray:
    """Map any real to [0, 1] as a ball bouncing between two walls."""
    return 1 - np.abs(np.remainder(x, 2) - 1)


def _texture(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stripes or checker pattern in local coords (u, v) -> RGB (..., 3) from two random colours."""
    pal = rng.random((2, 3), dtype=np.float32)
    freq = 2 + 6 * rng.random(2)
    if rng.integers(2) == 0:  # stripes
        w = 0.5 + 0.5 * np.sin(freq[0] * 2 * math.pi * u)
    else:  # checker
        w = np.remainder(np.floor(freq[0] * u) + np.floor(freq[1] * v), 2)
    w = w[..., None].astype(np.float32)
    return pal[0] * w + pal[1] * (1 - w)


def _sprite_mask(u: np.ndarray, v: np.ndarray, shape: int) -> np.ndarray:
    if shape == 0:  # disc
        return u ** 2 + v ** 2 <= 1
    if shape == 1:  # square
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    return (v >= -0.6) & (v <= 1.2 - 2 * np.abs(u))  # triangle


def render_clip(seed: int, frames: int, size: int, fps_scale: float, difficulty: float) -> torch.Tensor:
    """One clip (T, 3, H, W) float32 in [0, 1]. `fps_scale` = motion per frame (1 = nominal 8 fps)."""
    rng = np.random.default_rng(seed)
    t = (np.arange(frames, dtype=np.float32) * fps_scale)[:, None, None]  # (T, 1, 1)
    ys, xs = np.meshgrid(np.linspace(0, 1, size, dtype=np.float32), np.linspace(0, 1, size, dtype=np.float32),
                         indexing="ij")
    pan = (rng.random(2) - 0.5) * 0.06  # background scrolls at a constant velocity (camera pan)
    video = 0.35 + 0.4 * _texture((xs + pan[0] * t) * 1.3, (ys + pan[1] * t) * 1.3, rng)  # (T, H, W, 3)
    speed = 0.01 + 0.05 * difficulty
    for _ in range(1 + int(round(difficulty * 4))):  # back to front: later sprites occlude earlier
        p0, vel = rng.random(2), (rng.random(2) - 0.5) * 2 * speed
        radius = 0.12 + 0.12 * rng.random()
        spin = (rng.random() - 0.5) * 0.4 * (0.5 + difficulty)
        cx = 0.1 + 0.8 * _reflect(p0[0] + vel[0] * t)  # (T, 1, 1): bounces off the edges
        cy = 0.1 + 0.8 * _reflect(p0[1] + vel[1] * t)
        ang = spin * t + 2 * math.pi * rng.random()
        dx, dy = xs - cx, ys - cy  # (T, H, W)
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / radius  # sprite-local coordinates, rotating
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / radius
        inside = _sprite_mask(u, v, int(rng.integers(3)))
        video = np.where(inside[..., None], _texture(u, v, rng), video)
    return torch.from_numpy(np.ascontiguousarray(video.clip(0, 1).transpose(0, 3, 1, 2), dtype=np.float32))


class SyntheticVideos(Dataset):
    """Deterministic procedural clips; `len` is the split size from the config."""

    def __init__(self, cfg: DataConfig, split: str = "train", seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        self.cfg, self.split = cfg, split
        self.length = cfg.num_train if split == "train" else cfg.num_eval
        self.base = zlib.crc32(f"{seed}/{split}".encode()) << 20  # disjoint seed ranges per split
        self.fps_scale = 8.0 / cfg.fps if cfg.fps else 1.0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return render_clip(self.base + index, self.cfg.frames, self.cfg.resolution, self.fps_scale,
                           self.cfg.difficulty)
