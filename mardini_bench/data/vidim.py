"""VIDIM-Bench test sets (design §6.1): DAVIS-7 and UCF101-7, 9-frame clips written as PNG folders.

DAVIS-7 follows `generate_davis-7.py` of the VIDIM benchmark scripts: every sequence of
`JPEGImages/480p/*` is cut into consecutive non-overlapping 9-frame chunks (incomplete tails dropped),
each frame centre-cropped to a square and resized to 256x256 in linear light (gamma 2.2; area
averaging when shrinking, bicubic when enlarging). The script expects 357 clips.

UCF101-7 is the first 400 9-frame chunks of test split 1, videos in the order of the official
`testlist01.txt`. The VIDIM script reads TFDS `ucf101` (config `ucf101_1_256`), whose frames ffmpeg
already scaled to 256x256 without a crop; `crop=False` (the default) does the same stretch here (bicubic
in sRGB), `crop=True` uses the DAVIS-7 processing instead. PIL's bicubic kernel (a = -0.5) differs
slightly from OpenCV's and swscale's (a = -0.75); frames therefore match the originals closely, not
bit for bit.

Output: OUT/<clip>/00000.png .. 00008.png plus OUT/manifest.csv (clip, source, first_frame, frames,
height, width), built in a temporary sibling folder and renamed into place, so OUT is either complete
or absent. OUT is itself a `frame_folder` dataset root.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from mardini_bench.data.video_io import VideoReadError, frame_files, probe_video, read_frames_folder, read_video
from mardini_bench.io import naming_full_disk, plain_mode

CHUNK = 9  # frames per clip: first and last given, 7 generated
SIZE = 256  # output side in pixels
GAMMA = 2.2  # the scripts' linear-light approximation of sRGB
UCF_CHUNKS = 400
MANIFEST_FIELDS = ("clip", "source", "first_frame", "frames", "height", "width")

PathLike = Union[str, Path]
Chunk = Tuple[str, str, int, np.ndarray]  # clip name, source, first frame, uint8 [9, H, W, 3]


def centre_square(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frame[top:top + side, left:left + side]


def resize_linear_light(frame: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 [H, W, 3] square -> uint8 [size, size, 3], resampled on gamma-decoded (linear) values."""
    linear = (frame.astype(np.float32) / 255) ** GAMMA
    shrink = frame.shape[0] > size
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC  # BOX = exact area averaging
    planes = [np.asarray(Image.fromarray(linear[..., c], mode="F").resize((size, size), resample))
              for c in range(3)]
    out = np.clip(np.stack(planes, axis=-1), 0, 1) ** (1 / GAMMA)  # bicubic overshoot clipped first
    return np.round(out * 255).astype(np.uint8)


def stretch_srgb(frame: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 [H, W, 3] -> [size, size, 3], bicubic on sRGB values, no crop (ffmpeg `scale=WxH`)."""
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC))


def davis_frame(frame: np.ndarray, size: int = SIZE) -> np.ndarray:
    return resize_linear_light(centre_square(frame), size)


def chunk_starts(num_frames: int, chunk: int = CHUNK) -> List[int]:
    """First frames of the consecutive non-overlapping chunks; an incomplete tail is dropped."""
    return list(range(0, num_frames - chunk + 1, chunk))


def davis_chunks(davis_root: PathLike, size: int = SIZE) -> Iterator[Chunk]:
    """DAVIS-7 clips, sequences in sorted order."""
    seq_root = Path(davis_root) / "JPEGImages" / "480p"
    if not seq_root.is_dir():
        raise VideoReadError(f"{seq_root}: no such folder (DAVIS_ROOT must hold JPEGImages/480p/<sequence>/)")
    seqs = sorted(p for p in seq_root.iterdir() if p.is_dir())
    if not seqs:
        raise VideoReadError(f"{seq_root}: empty folder (no sequence folders)")
    lengths = {seq: len(frame_files(seq)) for seq in seqs}
    if max(lengths.values()) < CHUNK:
        raise VideoReadError(f"{seq_root}: no clips: none of its {len(seqs)} sequence folders holds {CHUNK} JPEG/PNG "
                             f"frames or more (longest: {max(lengths.values())})")
    for seq in seqs:
        for start in chunk_starts(lengths[seq]):
            frames = read_frames_folder(seq, range(start, start + CHUNK))
            yield f"{seq.name}_{start:05d}", seq.name, start, np.stack([davis_frame(f, size) for f in frames])


def ucf_test_videos(ucf_root: PathLike, testlist: PathLike) -> List[Path]:
    """Video paths of `testlist01.txt` ("Class/v_Class_gXX_cYY.avi" lines), in the list's order."""
    if not Path(ucf_root).is_dir():
        raise VideoReadError(f"{ucf_root}: no such folder (UCF_ROOT must hold <Class>/v_*.avi)")
    if not Path(testlist).is_file():
        raise VideoReadError(f"{testlist}: no such file (the official UCF101 testlist01.txt)")
    listed = [ln.split()[0] for ln in Path(testlist).read_text(errors="replace").splitlines() if ln.strip()]
    if not listed:
        raise VideoReadError(f"{testlist}: no video names in this list")
    return [Path(ucf_root) / name for name in listed]


def ucf_chunks(ucf_root: PathLike, testlist: PathLike, *, limit: int = UCF_CHUNKS, crop: bool = False,
               size: int = SIZE) -> Iterator[Chunk]:
    """The first `limit` UCF101-7 clips, walking the test list in order."""
    process: Callable[[np.ndarray], np.ndarray] = (lambda f: davis_frame(f, size)) if crop else \
        (lambda f: stretch_srgb(f, size))
    videos = ucf_test_videos(ucf_root, testlist)
    available = sum(len(chunk_starts(probe_video(p).frames)) for p in videos)  # fail before a long build
    if available < limit:
        raise VideoReadError(f"{testlist}: its videos hold only {available} 9-frame chunks, {limit} were asked for")
    emitted = 0
    for path in videos:
        video = read_video(path)
        for start in chunk_starts(len(video)):
            if emitted == limit:
                return
            name = f"{path.stem}_{start:05d}"
            frames = np.stack([process(f) for f in video[start:start + CHUNK]])
            yield name, str(path.relative_to(ucf_root)), start, frames
            emitted += 1
    if emitted < limit:
        raise VideoReadError(f"{testlist}: its videos hold only {emitted} 9-frame chunks, {limit} were asked for")


def write_clips(chunks: Iterator[Chunk], out: PathLike, *, overwrite: bool = False,
                progress: Optional[Callable[[int], None]] = None) -> int:
    """Write clips as OUT/<clip>/NNNNN.png + manifest.csv atomically; returns the number of clips."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    made = [p for p in out.parents if not p.exists()]  # removed again if the build fails
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        with naming_full_disk(out.parent, out.name):
            count = _write_into(chunks, tmp, progress)
            if count == 0:
                raise VideoReadError(f"{out}: no clips to write")
            os.chmod(tmp, plain_mode(folder=True))  # mkdtemp's 0700 would hide the dataset from the group
            _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return count


def _write_into(chunks: Iterator[Chunk], folder: Path, progress: Optional[Callable[[int], None]]) -> int:
    rows = []
    for name, source, start, frames in chunks:
        (folder / name).mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / name / f"{i:05d}.png")
        rows.append(dict(zip(MANIFEST_FIELDS, (name, source, start, len(frames), *frames.shape[1:3]))))
        if progress is not None:
            progress(len(rows))
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; an old OUT is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)


def build_davis7(davis_root: PathLike, out: PathLike, *, overwrite: bool = False, size: int = SIZE,
                 progress: Optional[Callable[[int], None]] = None) -> int:
    """DAVIS-7 under `out`; returns the number of clips (357 for DAVIS 2017 480p)."""
    return write_clips(davis_chunks(davis_root, size), out, overwrite=overwrite, progress=progress)


def build_ucf101_7(ucf_root: PathLike, testlist: PathLike, out: PathLike, *, overwrite: bool = False,
                   crop: bool = False, limit: int = UCF_CHUNKS, size: int = SIZE,
                   progress: Optional[Callable[[int], None]] = None) -> int:
    """UCF101-7 under `out`; returns the number of clips (`limit`, 400 by default)."""
    chunks = ucf_chunks(ucf_root, testlist, limit=limit, crop=crop, size=size)
    return write_clips(chunks, out, overwrite=overwrite, progress=progress)
