"""Turning uint8 videos and images into the exact inputs of the feature networks.

Resizes are part of the protocol (they move FVD by ~3 % on the golden case), so each has a name:
  * `torch_bilinear`: F.interpolate(bilinear, align_corners=False, antialias=False) on 0..255 floats,
    as cd-fvd and common_metrics_on_video_quality do (the default);
  * `tf1_bilinear`: TF1 `resize_bilinear` without half-pixel centres, the original TF FVD resize;
  * `none`: the frames must already be 224x224.
FID uses clean-fid's "clean" resize (PIL bicubic on float channels), taken from clean-fid itself.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from cleanfid.resize import build_resizer

I3D_RESIZES = ("torch_bilinear", "tf1_bilinear", "none")
I3D_SIZE = 224
INCEPTION_SIZE = 299


def as_uint8_btchw(x: Any, what: str = "videos") -> torch.Tensor:
    """(B, T, 3, H, W) uint8, or float in [0, 1] rounded to uint8 (what a saved file would hold)."""
    x = torch.as_tensor(x)
    if x.ndim != 5 or x.shape[2] != 3:
        raise ValueError(f"{what} must be (B, T, 3, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ValueError(f"{what} must be uint8 or float in [0, 1], got {x.dtype}")
    x = x.float()
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of {x.numel()} values are NaN or infinite; a metric of them would "
                         f"be a number about nothing")
    low, high = float(x.min()), float(x.max())
    slack = 0.5 / 255  # what rounds to 0 or 255 anyway
    if low < -slack or high > 1 + slack:
        scale = " (it looks like 0..255: divide by 255, or pass uint8)" if high > 2 else ""
        raise ValueError(f"{what}: float values must lie in [0, 1], got [{low:.4g}, {high:.4g}]{scale}")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def tf1_resize_bilinear(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """TF1 `resize_bilinear(align_corners=False)`: source = dst * in/out, no half-pixel shift."""

    def axis(n_in: int, n_out: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        i0 = src.floor().long().clamp(max=n_in - 1)
        return i0, (i0 + 1).clamp(max=n_in - 1), (src - i0.double()).to(x.dtype)

    y0, y1, fy = axis(x.shape[-2], out_h)
    x0, x1, fx = axis(x.shape[-1], out_w)
    top, bottom = x[..., y0, :], x[..., y1, :]
    rows = top + (bottom - top) * fy[:, None]
    left, right = rows[..., x0], rows[..., x1]
    return left + (right - left) * fx


def resize_frames(frames: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(M, 3, H, W) float 0..255 -> (M, 3, size, size) with a named resize."""
    if mode not in I3D_RESIZES:
        raise ValueError(f"unknown resize {mode!r}; valid: {', '.join(I3D_RESIZES)}")
    if tuple(frames.shape[-2:]) == (size, size):
        return frames
    if mode == "none":
        raise ValueError(f"resize 'none' needs {size}x{size} frames, got {tuple(frames.shape[-2:])}")
    if mode == "tf1_bilinear":
        return tf1_resize_bilinear(frames, size, size)
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def i3d_input(videos: torch.Tensor, resize: str = "torch_bilinear") -> torch.Tensor:
    """uint8 (B, T, 3, H, W) -> float32 (B, 3, T, 224, 224) in [-1, 1] (pixel / 255 * 2 - 1)."""
    b, t, c, h, w = videos.shape
    frames = resize_frames(videos.reshape(b * t, c, h, w).float(), I3D_SIZE, resize)
    x = frames.reshape(b, t, c, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4).contiguous()
    return x / 255.0 * 2.0 - 1.0


def inception_input(images: torch.Tensor, threads: int = 1) -> torch.Tensor:
    """uint8 (M, 3, H, W) -> float32 (M, 3, 299, 299) = (clean resize - 128) / 128, on the CPU.

    The resize is PIL's (clean-fid's protocol), so it runs on the CPU whatever the network's device;
    PIL releases the GIL while it resamples, so `threads` > 1 resizes images in parallel."""
    resize = build_resizer("clean")  # per-channel float PIL bicubic to 299x299, clipped to 0..255
    hwc = list(images.permute(0, 2, 3, 1).cpu().numpy())
    if threads > 1 and len(hwc) > 1:
        with concurrent.futures.ThreadPoolExecutor(min(threads, len(hwc))) as pool:
            resized = list(pool.map(resize, hwc))
    else:
        resized = [resize(img) for img in hwc]
    out = np.stack(resized).astype(np.float32)  # (M, 299, 299, 3)
    return (torch.from_numpy(out).permute(0, 3, 1, 2).contiguous() - 128.0) / 128.0
