"""Sets of videos or images for the metrics CLI: a folder of video files, or a .npy/.npz array.

Arrays are uint8 `[N, T, H, W, 3]` (videos) or `[N, H, W, 3]` (images, T = 1); a `.npz` holding
several arrays names one as `FILE.npz:NAME`. A folder's videos may differ in size and length: each is
cut to its first `frames` frames, centre-cropped to the common aspect and resized (antialiased
bilinear, rounded to uint8) to one common size, by default the smallest height and width in the set.
Everything done to the inputs is returned by `describe()` for the metric protocol.
Videos are read one batch at a time, so a folder never has to fit in memory.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# the project's one decoding interface (time-bounded, clamps to frames that really decode)
from mardini_bench.data.video_io import (VIDEO_EXTENSIONS, VideoReadError, permission_denied, probe_video,
                                         read_video)

ARRAY_FORM = "uint8 videos [N,T,H,W,3] or images [N,H,W,3]"


class InputError(ValueError):
    """An input set that cannot be read as videos or images; the message names it."""


class VideoSet:
    """N clips of `frames` frames, yielded as uint8 (B, T, 3, H, W) batches."""

    def __init__(self, spec: str, frames: int) -> None:
        self.spec, self.frames = spec, frames
        self.size: Optional[Tuple[int, int]] = None  # common (H, W) of a folder; None = as stored
        self.array: Optional[np.ndarray] = None
        self.files: List[Path] = []
        path, key = spec.rsplit(":", 1) if ".npz:" in spec else (spec, "")
        self.path = Path(path)
        if self.path.is_dir():
            self._open_folder()
        elif self.path.suffix in (".npy", ".npz"):
            self._open_array(key or None)
        else:
            raise InputError(f"{spec}: not a folder of videos nor a .npy/.npz file")

    # -- opening -------------------------------------------------------------------------------
    def _open_folder(self) -> None:
        exts = {e.lower() for e in VIDEO_EXTENSIONS}
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in exts)
        if not self.files:
            raise InputError(f"{self.spec}: no video files ({', '.join(sorted(exts))}) in this folder")
        self.shapes = [self._probe(p) for p in self.files]  # (frames, H, W) per file

    def _probe(self, path: Path) -> Tuple[int, int, int]:
        try:
            info = probe_video(path)
        except VideoReadError as err:
            raise InputError(str(err)) from None  # it names the file
        n, h, w = _probe_fields(info)
        if n < self.frames:
            raise InputError(f"{path}: has {n} frames, fewer than --frames {self.frames}; "
                             f"pass --frames {n} or leave this video out")
        return n, h, w

    def _open_array(self, key: Optional[str]) -> None:
        if not self.path.is_file():
            raise InputError(f"{self.spec}: file not found")
        if not os.access(self.path, os.R_OK):
            raise InputError(permission_denied(self.spec))
        data = _load_array(self.path, key, self.spec)
        if data.dtype != np.uint8 or data.ndim not in (4, 5) or data.shape[-1] != 3:
            raise InputError(f"{self.spec}: expected {ARRAY_FORM}, got {data.dtype} {list(data.shape)}")
        if len(data) == 0:
            raise InputError(f"{self.spec}: holds no videos (shape {list(data.shape)}); expected {ARRAY_FORM}")
        self.array = data[:, None] if data.ndim == 4 else data
        if data.ndim == 5 and self.array.shape[1] < self.frames:
            raise InputError(f"{self.spec}: videos have {self.array.shape[1]} frames, fewer than "
                             f"--frames {self.frames}; pass --frames {self.array.shape[1]}")

    # -- properties ----------------------------------------------------------------------------
    @property
    def is_images(self) -> bool:
        return self.array is not None and self.array.shape[1] == 1

    def __len__(self) -> int:
        return len(self.files) if self.array is None else len(self.array)

    def natural_size(self) -> Tuple[int, int]:
        """The smallest (H, W) over the set (its stored size when all agree)."""
        if self.array is not None:
            return int(self.array.shape[2]), int(self.array.shape[3])
        return min(s[1] for s in self.shapes), min(s[2] for s in self.shapes)

    def describe(self) -> Dict[str, Any]:
        kind = "images" if self.is_images else "videos"
        out: Dict[str, Any] = {"source": str(self.spec), "kind": kind, "count": len(self)}
        if not self.is_images:
            out["frames"] = f"first {self.frames}"
        stored = self._stored_sizes()
        out["stored_sizes"] = [list(s) for s in stored]
        if stored != [self.target_size()]:
            out["made_uniform"] = f"centre crop to aspect, antialiased bilinear to {list(self.target_size())}, uint8"
        return out

    def _stored_sizes(self) -> List[Tuple[int, int]]:
        if self.array is not None:
            return [self.natural_size()]
        return sorted({(s[1], s[2]) for s in self.shapes})

    def target_size(self) -> Tuple[int, int]:
        return self.size or self.natural_size()

    # -- reading -------------------------------------------------------------------------------
    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """uint8 (B, T, 3, H, W) batches in sorted-file / array order."""
        for i in range(0, len(self), batch_size):
            clips = [self._clip(j) for j in range(i, min(i + batch_size, len(self)))]
            yield torch.stack(clips)

    def _clip(self, j: int) -> torch.Tensor:
        if self.array is not None:
            # a copy: the array is a read-only memory map, and torch wraps only writable memory without a warning
            clip = np.array(self.array[j, : self.frames if not self.is_images else 1])
        else:
            try:
                clip = read_video(self.files[j], list(range(self.frames)))
            except VideoReadError as err:
                raise InputError(str(err)) from None
            if len(clip) < self.frames:
                raise InputError(f"{self.files[j]}: only {len(clip)} frames decode, fewer than "
                                 f"--frames {self.frames}; pass --frames {len(clip)} or leave it out")
        return fit(torch.from_numpy(np.asarray(clip)).permute(0, 3, 1, 2), self.target_size())


def _probe_fields(info: Any) -> Tuple[int, int, int]:
    """(frames, H, W) from whatever `probe_video` returns (a mapping or an object)."""
    get = info.get if isinstance(info, dict) else lambda k: getattr(info, k, None)
    n = get("num_frames") if get("num_frames") is not None else get("frames")
    return int(n), int(get("height")), int(get("width"))


def _load_array(path: Path, key: Optional[str], spec: str) -> np.ndarray:
    """The array in a .npy file, or the one named (or only) array of a .npz; InputError naming the file
    and what a valid one is when it is empty, truncated, damaged, not NumPy's format or holds Python
    objects (which are never unpickled: a file of data must not run code)."""
    kind = "a .npy file (numpy.save)" if path.suffix == ".npy" else "a .npz archive (numpy.savez)"

    def bad(fault: str) -> InputError:
        return InputError(f"{spec}: cannot read it as an array ({fault}); expected {kind} holding {ARRAY_FORM}")

    try:
        with open(path, "rb") as f:
            head = f.read(6)
        if not head:
            raise bad("empty file")
        if not head.startswith((b"\x93NUMPY", b"PK")):  # numpy would take anything else for a pickle
            raise bad("a Python pickle, not NumPy's format" if head[:1] == b"\x80" else "not NumPy's format")
        data = np.load(path, mmap_mode="r" if path.suffix == ".npy" else None, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return _pick(data, key, spec)
        return data
    except PermissionError:
        raise InputError(permission_denied(spec)) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        if isinstance(err, InputError):
            raise
        text = str(err).lower()
        raise bad("it holds Python objects, not numbers" if "pickle" in text or "python objects" in text
                  else "truncated" if isinstance(err, EOFError) or "mmap length" in text or "truncat" in text
                  else "damaged or truncated") from None


def _pick(npz: Any, key: Optional[str], spec: str) -> np.ndarray:
    names = list(npz.files)
    if key is None and len(names) == 1:
        key = names[0]
    if key not in names:
        raise InputError(f"{spec}: holds arrays {', '.join(names)}; choose one as FILE.npz:NAME")
    return npz[key]


def fit(frames: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> centre-cropped to the aspect of `size`, resized to it, uint8."""
    h, w = frames.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return frames
    ch, cw = (h, round(h * tw / th)) if w * th > h * tw else (round(w * th / tw), w)  # crop box
    top, left = (h - ch) // 2, (w - cw) // 2
    x = frames[..., top:top + ch, left:left + cw].float()
    x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)
