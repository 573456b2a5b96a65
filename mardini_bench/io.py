"""Files: the one atomic writer, JSON read and write, JSON lines, and the file lock.

Every file the toolkit writes goes through `atomic_file` (a temp file beside the target, renamed into
place), so a reader never sees half a file and a write cut short (kill -9, full disk) leaves the old
file and no temp file behind; a full disk is a `NoSpaceError` naming the folder. Every JSON read goes
through `load_json`, which names the file and the fault when it is damaged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Union

PathLike = Union[str, Path]


class DamagedFileError(ValueError):
    """A file that exists but cannot be used (unreadable, truncated, malformed, wrong type); the
    message names the file and the fault."""


class NoSpaceError(OSError):
    """A write that found its file system full (ENOSPC) or the user's quota used up (EDQUOT); the
    message names the folder. Built as `NoSpaceError(errno, message)`, so it pickles like any OSError."""

    def __str__(self) -> str:
        return str(self.strerror)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def naming_full_disk(folder: PathLike, what: str) -> Iterator[None]:
    """Turn a full-disk OSError raised by the body into a `NoSpaceError` naming `folder` and `what`."""
    try:
        yield
    except NoSpaceError:
        raise
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        raise NoSpaceError(err.errno, f"{folder}: no space left on the device (or quota used up) while writing "
                                      f"{what}; free some space there and run again") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_mode(folder: bool = False) -> int:
    """The mode a plain `open` (or `mkdir`) gives a new file (folder) under the current umask."""
    return (0o777 if folder else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_file(path: PathLike, previous: Optional[PathLike] = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the body returns, move it onto `path`.

    The file gets the mode a plain `open` would give it (mkstemp's 0600 would hide results from the
    rest of a shared group). `previous`: the file being replaced is kept under that name. If the body
    raises, the temp file is removed and `path` is untouched; a full disk raises `NoSpaceError`."""
    path = Path(path)
    with naming_full_disk(path.parent, path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, plain_mode())
            if previous is not None and path.exists():
                os.replace(path, previous)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """`write(f)` into a binary file that appears at `path` whole, after an fsync, or not at all."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def json_safe(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None: JSON has no NaN, and a reader must
    see a missing number as missing (null), never as a number."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def to_json(data: Any, indent: Optional[int] = 2, sort_keys: bool = True) -> str:
    """Strict JSON text (non-finite floats as null); sorted keys make equal data give equal bytes."""
    return json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: PathLike, data: Any) -> None:
    """Write `data` as JSON, atomically; non-finite floats become null (`json_safe`)."""
    write_text(path, to_json(data) + "\n")


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _json_name(tp: Any) -> str:
    if isinstance(tp, tuple):
        return " or ".join(_json_name(t) for t in tp)
    return _JSON_NAMES.get(tp, tp.__name__)


def load_json(path: PathLike, expect: Any = dict) -> Any:
    """The JSON value in `path`, of type `expect`: every JSON read goes through here.

    Raises FileNotFoundError when `path` is absent, and `DamagedFileError` naming the file and the
    fault when it cannot be read, is not valid JSON (a truncated write, an empty file) or is not an
    `expect`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        where = f"{getattr(err, 'msg', err)} at line {getattr(err, 'lineno', '?')}"
        fault = where if text.strip() else "empty file"
        raise DamagedFileError(f"{path}: damaged JSON ({fault}; truncated or not JSON)") from None
    if not isinstance(data, expect):
        raise DamagedFileError(f"{path}: expected a JSON {_json_name(expect)}, got {_json_name(type(data))}")
    return data


def read_json(path: PathLike) -> Optional[Dict[str, Any]]:
    """The JSON object in `path`, or None when it is absent or damaged: for markers whose damage means
    no more than their absence."""
    try:
        return load_json(path)
    except (FileNotFoundError, DamagedFileError):
        return None


def append_jsonl(path: PathLike, entry: Dict[str, Any]) -> None:
    """Append one JSON line. A write cut short leaves a partial last line, which `read_jsonl` skips."""
    with naming_full_disk(Path(path).parent, Path(path).name), open(path, "a") as f:
        f.write(to_json(entry, indent=None, sort_keys=False) + "\n")  # log lines keep their key order


def read_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """The objects of a JSON-lines file, leaving out any line that is not a whole JSON object: the
    partial last line of a write cut short by a kill or a full disk."""
    entries = []
    for line in Path(path).read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def write_jsonl(path: PathLike, entries: List[Dict[str, Any]]) -> None:
    """Replace a JSON-lines file atomically."""
    write_text(path, "".join(to_json(entry, indent=None, sort_keys=False) + "\n" for entry in entries))


@contextlib.contextmanager
def exclusive_lock(path: PathLike, block: bool = True) -> Iterator[bool]:
    """An exclusive `flock` on the file `path` (created if missing) for the `with` body; the kernel
    frees it if the holder dies. Yields False when `block` is False and another process holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the flock


__all__ = ["DamagedFileError", "NoSpaceError", "naming_full_disk", "plain_mode", "atomic_file", "atomic_write",
           "write_text", "json_safe", "to_json", "write_json", "load_json", "read_json", "append_jsonl", "read_jsonl",
           "write_jsonl", "exclusive_lock"]
