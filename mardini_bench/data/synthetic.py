"""Built-in procedural video dataset: the default, needing no download.

Each clip is a scrolling textured background (a camera pan) with 1-5 textured sprites (discs,
squares, diamonds) that move, bounce off the frame edges, rotate, and occlude one another in a fixed
depth order. That gives the temporal structure the tasks need: motion to interpolate, occlusions to
resolve, and a moving background to extrapolate.

`data.motion` picks how sprites move (`MOTIONS`):

    ballistic   the default: several pixels per frame, constant acceleration (curved paths), bounces,
                and textures coarse enough to tell from noise at 32x32. Copying the nearest frame puts
                a sprite in the wrong place, blending shows it twice, so neither trivial baseline is
                close to the truth and a model has motion to learn.
    drift       the first version, bit for bit: straight lines at about 1 px per frame at 32x32
                (difficulty 0.5) and 4-pixel texture periods; blending is nearly optimal on it, so it
                cannot tell variants apart.

Clip `i` of a split is a pure function of (seed, split, i): the generator is seeded with that tuple,
so every split is deterministic and train/val/test never share a seed. Rendering is vectorised over
sprites, frames and pixels with numpy; the only Python loop is the depth-ordered composite over the
few sprites.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from mardini_bench.config import DataConfig

SPLITS = ("train", "val", "test")
MOTIONS = ("ballistic", "drift")
NOMINAL_FPS = 8.0  # the paper trains at 8 fps (Fig. 4); at this rate a sprite moves `speed` per frame


# numpy, not torch: single-threaded with little per-op overhead, so data generation never competes
# with the training step for torch's intra-op threads on a 2-core machine.
def _reflect(x: np.ndarray) -> np.ndarray:
    """Map any real to [0, 1] as a ball bouncing between two walls."""
    return 1 - np.abs(np.remainder(x, 2) - 1)


def _background(rng: np.random.Generator, t: np.ndarray, grid: np.ndarray, coarse: bool) -> np.ndarray:
    """(T, H, W) weights in [-1, 1]: a separable sine plaid scrolling at a constant velocity.

    `coarse` (ballistic): 1-3 cycles per frame width; otherwise (drift) 2-8, which at 32 px is a
    4-pixel period, as fine as the pixel codec's patches, and indistinguishable from noise to a small
    denoiser."""
    pan = ((rng.random(2) - 0.5) * 0.06).astype(np.float32)  # frame widths per frame
    freq = ((1 + 2 * rng.random(2)) if coarse else (2 + 6 * rng.random(2))).astype(np.float32)
    bx = np.sin(2 * math.pi * freq[0] * (grid[None] + pan[0] * t[:, None]))  # (T, W)
    by = np.sin(2 * math.pi * freq[1] * (grid[None] + pan[1] * t[:, None]))  # (T, H)
    return by[:, :, None] * bx[:, None, :]


def _drift_paths(rng: np.random.Generator, n: int, t: np.ndarray, difficulty: float) -> np.ndarray:
    """`drift`: straight lines at up to 0.01 + 0.05 * difficulty frame widths per frame."""
    speed = 0.01 + 0.05 * difficulty  # frame widths per frame at the nominal fps
    p0 = rng.random((n, 2)).astype(np.float32)
    vel = ((rng.random((n, 2)) - 0.5) * 2 * speed).astype(np.float32)
    return p0[:, :, None] + vel[:, :, None] * t  # (S, 2, T), unfolded (before bouncing)


def _ballistic_paths(rng: np.random.Generator, n: int, t: np.ndarray, difficulty: float) -> np.ndarray:
    """`ballistic`: speed (0.04 + 0.08 difficulty) x U(0.6, 1) frame widths per frame in a random
    direction (1.5-2.6 px per frame at 32x32 and difficulty 0.5), plus a constant acceleration of up to
    0.012 (0.5 + difficulty) widths per frame^2 per axis (a path bends by up to ~0.4 widths over 9
    frames): copying and linear blending are both visibly wrong."""
    speed = (0.04 + 0.08 * difficulty) * (0.6 + 0.4 * rng.random(n))  # (S,) frame widths per frame
    heading = 2 * math.pi * rng.random(n)
    vel = np.stack((np.cos(heading), np.sin(heading)), 1) * speed[:, None]  # (S, 2)
    acc = (rng.random((n, 2)) - 0.5) * 2 * 0.012 * (0.5 + difficulty)  # (S, 2) per frame^2
    p0 = rng.random((n, 2))
    path = p0[:, :, None] + vel[:, :, None] * t + 0.5 * acc[:, :, None] * t ** 2
    return path.astype(np.float32)  # (S, 2, T)


def _sprite_coords(rng: np.random.Generator, n: int, t: np.ndarray, grid: np.ndarray, difficulty: float,
                   motion: str):
    """Sprite-local coordinates (u, v), each (S, T, H, W): |u|, |v| <= 1 spans the sprite's radius."""
    path = (_ballistic_paths if motion == "ballistic" else _drift_paths)(rng, n, t, difficulty)
    radius = (0.12 + 0.12 * rng.random(n)).astype(np.float32)
    spin = ((rng.random(n) - 0.5) * 0.4 * (0.5 + difficulty)).astype(np.float32)  # radians per frame
    ang = spin[:, None] * t + (2 * math.pi * rng.random(n)).astype(np.float32)[:, None]  # (S, T)
    centre = 0.1 + 0.8 * _reflect(path)  # (S, 2, T): bounces off the edges
    cos = (np.cos(ang) / radius[:, None])[..., None, None]  # (S, T, 1, 1)
    sin = (np.sin(ang) / radius[:, None])[..., None, None]
    dx = grid[None, None, None, :] - centre[:, 0, :, None, None]  # (S, T, 1, W)
    dy = grid[None, None, :, None] - centre[:, 1, :, None, None]  # (S, T, H, 1)
    return dx * cos + dy * sin, dy * cos - dx * sin


def _inside(u: np.ndarray, v: np.ndarray, shape: int) -> np.ndarray:
    if shape == 0:  # disc
        return u * u + v * v <= 1
    if shape == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    return np.abs(u) + np.abs(v) <= 1  # diamond


def render_clip(seed, frames: int, size: int, fps_scale: float = 1.0, difficulty: float = 0.5,
                motion: str = "ballistic") -> torch.Tensor:
    """One clip (T, 3, H, W) float32 in [0, 1]; `seed` is anything `np.random.default_rng` takes.

    `fps_scale` is the motion per frame relative to the nominal 8 fps (2 = twice as far per frame).
    """
    if motion not in MOTIONS:
        raise ValueError(f"data.motion: unknown motion {motion!r}; valid: {', '.join(MOTIONS)}")
    rng = np.random.default_rng(seed)
    n = 1 + int(round(difficulty * 4))
    t = np.arange(frames, dtype=np.float32) * np.float32(fps_scale)  # (T,)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres in [0, 1]
    coarse = motion == "ballistic"
    weight = _background(rng, t, grid, coarse)  # (T, H, W) texture weight of the visible surface
    u, v = _sprite_coords(rng, n, t, grid, difficulty, motion)
    shapes, freq = rng.integers(3, size=n), ((0.5 if coarse else 1) + (1 if coarse else 3) * rng.random((n, 2)))
    freq = freq.astype(np.float32)  # pattern cycles across the sprite (coarse: 0.5-1.5, drift: 1-4)
    top = np.zeros((frames, size, size), np.uint8)  # 0 = background, k = sprite k (later in front)
    for k in range(n):
        inside = _inside(u[k], v[k], int(shapes[k]))
        top = np.where(inside, np.uint8(k + 1), top)
        pattern = np.sin(math.pi * freq[k, 0] * u[k]) * np.cos(math.pi * freq[k, 1] * v[k])  # rotates with it
        weight = np.where(inside, pattern, weight)
    palette = (0.1 + 0.8 * rng.random((2, n + 1, 3))).astype(np.float32)  # two colours per surface
    palette[:, 0] = 0.35 + 0.4 * palette[:, 0]  # a lower-contrast background keeps sprites visible
    lo, span = palette[0].T, (palette[1] - palette[0]).T  # (3, S+1)
    video = np.take(lo, top, axis=1) + np.take(span, top, axis=1) * (0.5 + 0.5 * weight)  # (3, T, H, W)
    return torch.from_numpy(np.ascontiguousarray(video.transpose(1, 0, 2, 3)).clip(0, 1))


class SyntheticVideos(Dataset):
    """Deterministic procedural clips (T, 3, H, W); `len` is the split size from the config."""

    def __init__(self, cfg: DataConfig, split: str = "train", seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if not 0 <= cfg.difficulty <= 1:
            raise ValueError(f"data.difficulty must be in [0, 1], got {cfg.difficulty}")
        if cfg.fps is not None and cfg.fps <= 0:
            raise ValueError(f"data.fps must be > 0 (or None for the nominal {NOMINAL_FPS:g} fps), got {cfg.fps}")
        self.cfg, self.split, self.seed = cfg, split, seed
        self.length = cfg.num_train if split == "train" else cfg.num_eval
        self.fps_scale = NOMINAL_FPS / cfg.fps if cfg.fps is not None else 1.0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"clip {index} out of range for the {self.length}-clip {self.split} split")
        # The seed tuple (seed, split, index) gives every clip of every split its own stream.
        key = (self.seed, SPLITS.index(self.split), index)
        return render_clip(key, self.cfg.frames, self.cfg.resolution, self.fps_scale, self.cfg.difficulty,
                           self.cfg.motion)
