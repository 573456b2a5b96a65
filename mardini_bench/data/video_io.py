"""One small video-reading interface over decord, with errors that name the file.

decord raises bare RuntimeErrors on missing, corrupt or truncated files, can report more frames than a
truncated file holds, and can deadlock on such a container. So every decode here runs in a daemon
thread under a time bound, and a full read clamps to the frames that actually decode. decord's C++ code
also logs its own `ERROR opening: ...` line straight to file descriptor 2, which no log level silences:
a decode runs with fd 2 routed to a temporary file, and ffmpeg's reason in that line goes into our one
error message instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SIDECAR_EXTENSIONS = (".md", ".txt", ".csv", ".json", ".yaml", ".yml")  # metadata beside videos: ignored

PathLike = Union[str, Path]


class VideoReadError(Exception):
    """A video that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int  # as the container reports it; a truncated file may decode fewer
    fps: float
    height: int
    width: int


def _decoder_errors() -> tuple:
    """What decord raises on bad data (its own DECORDError is no RuntimeError)."""
    from decord._ffi.base import DECORDError  # decord loads a native library: only where a video file is read

    return (RuntimeError, ValueError, IndexError, DECORDError)


def permission_denied(path: PathLike) -> str:
    return f"{path}: permission denied (this user may not read it; check its mode and owner)"


def _check_path(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(f"{path}: no such file")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise VideoReadError(f"{path}: unsupported extension {path.suffix!r}; valid: {', '.join(VIDEO_EXTENSIONS)}")
    if not os.access(path, os.R_OK):  # decord would call it corrupt: it raises one RuntimeError for all
        raise VideoReadError(permission_denied(path))


_STDERR = threading.Lock()  # one redirection of fd 2 at a time


@contextlib.contextmanager
def _decoder_log() -> Iterator[List[str]]:
    """Route file descriptor 2 to a temporary file for the body; the list receives what was written
    there (decord's own log lines) once the body is done and fd 2 is back."""
    log: List[str] = []
    with _STDERR, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 to route (a daemon): nothing to silence
            yield log
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.append(sink.read().decode(errors="replace"))


def _decoder_message(path: Path, err: BaseException, log: str) -> str:
    """One line naming the file once: ffmpeg's reason from decord's log line when there is one."""
    reasons = [m.group(1).strip() for m in re.finditer(rf"ERROR opening: {re.escape(str(path))}, (.+)", log)]
    if reasons and "permission denied" in reasons[-1].lower():
        return permission_denied(path)
    if reasons:
        return f"{path}: corrupt or truncated video (ffmpeg: {reasons[-1][:120]})"
    return f"{path}: corrupt or truncated video (decord: {_without_path(err, path)})"


def _without_path(err: BaseException, path: Path) -> str:
    """The first line of a library's message with the file name taken out: ours names it first."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
    text = lines[0].replace(f"'{path}'", "").replace(str(path), "")
    return " ".join(text.split()).strip(" .:,")[:120] or type(err).__name__


def _bounded(fn: Callable[[], Any], path: Path, timeout_s: float) -> Any:
    """Run `fn` in a daemon thread; a hang becomes a VideoReadError, decoder errors name the file.

    A daemon thread (not an executor, whose workers are joined at exit) so that a decoder stuck for
    good cannot keep the interpreter from exiting either.
    """
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = fn()
        except BaseException as err:  # handed to the caller's thread below
            box["err"] = err

    worker = threading.Thread(target=target, name=f"decode:{path.name}", daemon=True)
    with _decoder_log() as log:
        worker.start()
        worker.join(timeout_s)
    if worker.is_alive():
        raise VideoReadError(f"{path}: decoding did not finish within {timeout_s:g} s (hung container?)")
    err = box.get("err")
    if isinstance(err, VideoReadError):
        raise err
    if isinstance(err, _decoder_errors()):
        raise VideoReadError(_decoder_message(path, err, "".join(log))) from None
    if err is not None:
        raise err
    return box["out"]


def _reader(path: Path):
    import decord  # ~0.4 s and a native library: synthetic and frame-folder data never need it

    decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own log; decord's is routed by _decoder_log
    return decord.VideoReader(str(path), num_threads=1)


def probe_video(path: PathLike, *, timeout_s: float = 60.0) -> VideoInfo:
    """Frame count (as reported), fps and size; decodes frame 0 so an undecodable file fails here."""
    path = Path(path)
    _check_path(path)

    def probe() -> VideoInfo:
        vr = _reader(path)
        if len(vr) == 0:
            raise VideoReadError(f"{path}: no frames in this video")
        h, w = vr[0].shape[:2]
        return VideoInfo(str(path), len(vr), float(vr.get_avg_fps()), int(h), int(w))

    return _bounded(probe, path, timeout_s)


def _decodable_prefix(path: Path, reported: int) -> np.ndarray:
    """Frames decoded one by one until the first failure: what a truncated container really holds."""
    vr, frames = _reader(path), []
    for _ in range(reported):
        try:
            frames.append(vr.next().asnumpy())
        except (*_decoder_errors(), StopIteration):
            break
    if not frames:
        raise VideoReadError(f"{path}: corrupt or truncated video (no frame decodes)")
    return np.stack(frames)


def _read(path: Path, indices: Optional[List[int]]) -> np.ndarray:
    vr = _reader(path)
    n = len(vr)
    if indices is not None and indices and (max(indices) >= n or min(indices) < -n):
        bad = max(indices) if max(indices) >= n else min(indices)
        raise VideoReadError(f"{path}: too short: has {n} frames, frame {bad} was asked for")
    try:
        return vr.get_batch(list(range(n)) if indices is None else indices).asnumpy()
    except _decoder_errors():
        if indices is not None:
            raise VideoReadError(f"{path}: corrupt or truncated video: reports {n} frames but not all of "
                                 f"frames {min(indices)}..{max(indices)} decode") from None
    return _decodable_prefix(path, n)  # all frames asked for: clamp to those that decode


def read_video(path: PathLike, indices: Optional[Sequence[int]] = None, *, timeout_s: float = 60.0) -> np.ndarray:
    """uint8 frames [T, H, W, 3]; all frames that decode when `indices` is None.

    With explicit `indices` every one must decode (else VideoReadError); with None a container that
    over-reports its length is clamped to the frames that really decode.
    """
    path = Path(path)
    _check_path(path)
    idx = None if indices is None else [int(i) for i in indices]
    return _bounded(lambda: _read(path, idx), path, timeout_s)


def read_frames_folder(folder: PathLike, indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """uint8 [T, H, W, 3] from a folder of JPEG/PNG frames sorted by name (DAVIS layout).

    `indices` selects frames (by sorted position) without decoding the others.
    """
    folder = Path(folder)
    files = frame_files(folder)
    if indices is not None:
        if max(indices, default=0) >= len(files):
            raise VideoReadError(f"{folder}: too short: has {len(files)} frames, frame {max(indices)} was asked for")
        files = [files[i] for i in indices]
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except PermissionError:
            raise VideoReadError(permission_denied(f)) from None
        except OSError as err:
            raise VideoReadError(f"{f}: corrupt or truncated image ({_without_path(err, f)})") from None
    if len({fr.shape for fr in frames}) > 1:
        raise VideoReadError(f"{folder}: frames differ in size")
    return np.stack(frames)


def frame_files(folder: PathLike) -> List[Path]:
    """The JPEG/PNG frames of a sequence folder, sorted by name; VideoReadError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError(f"{folder}: no such folder")
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    except PermissionError:
        raise VideoReadError(permission_denied(folder)) from None
    if not files:
        raise VideoReadError(f"{folder}: empty folder (no JPEG/PNG frames)")
    return files
