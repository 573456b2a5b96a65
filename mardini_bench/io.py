"""Files: the one atomic writer, JSON read and write, JSON lines, and the file lock.

Every file the toolkit writes goes through `atomic_file` (a temp file beside the target, renamed into
place), so a reader never sees half a file and a write cut short (kill -9, full disk) leaves the old
file and no temp file behind; a full disk is a `NoSpaceError` naming the folder. A command that writes
many files (a report) does so in an `all_or_nothing` block: all of them, or none. Every JSON read goes
through `load_json`, which names the file and the fault when it is damaged.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import json
import math
import os
import secrets
import shutil
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
    raises, the temp file is removed and `path` is untouched; a full disk raises `NoSpaceError`.
    Inside `all_or_nothing`, what `path` held before is kept until that block ends."""
    path = Path(path)
    with naming_full_disk(path.parent, path.name):
        _journal_folders(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, plain_mode())
            _journal_file(path)
            if previous is not None and path.exists():
                os.replace(path, previous)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class _Journal:
    """What an `all_or_nothing` block has replaced: each file's first earlier version (a hidden hard
    link beside it, or None for a new file) and the folders it made."""

    def __init__(self) -> None:
        self.files: Dict[Path, Optional[Path]] = {}
        self.folders: List[Path] = []


_JOURNAL: contextvars.ContextVar[Optional[_Journal]] = contextvars.ContextVar("mardini_bench_journal", default=None)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written with `atomic_file` in the body stay only if the body returns. When it raises (bad
    input found half-way, a full disk, Ctrl-C), each is put back as it was before the block, or removed
    if it is new, with the folders the block made: a report either appears whole or leaves the last
    one as it was, never half of one."""
    if _JOURNAL.get() is not None:  # inside another block: its outcome decides for these files too
        yield
        return
    journal = _Journal()
    token = _JOURNAL.set(journal)
    try:
        yield
    except BaseException:
        _undo(journal)
        raise
    else:
        for backup in journal.files.values():
            if backup is not None:
                backup.unlink(missing_ok=True)
    finally:
        _JOURNAL.reset(token)


def _journal_folders(folder: Path) -> None:
    journal = _JOURNAL.get()
    if journal is not None:
        journal.folders += [p for p in (folder, *folder.parents) if not p.exists()][::-1]  # outermost first


def _journal_file(path: Path) -> None:
    """Keep what `path` holds now, the first time the open `all_or_nothing` block replaces it."""
    journal = _JOURNAL.get()
    if journal is None or path in journal.files:
        return
    backup = None
    if path.exists():
        backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
        try:
            os.link(path, backup)  # the old version's inode stays reachable after the rename replaces `path`
        except OSError:  # a file system without hard links
            shutil.copy2(path, backup)
    journal.files[path] = backup


def _undo(journal: _Journal) -> None:
    for path, backup in journal.files.items():
        if backup is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(backup, path)
    for folder in reversed(journal.folders):  # innermost first; a folder something else filled stays
        with contextlib.suppress(OSError):
            folder.rmdir()


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
    """The objects of a JSON-lines file, leaving out any line that is not a whole JSON object in UTF-8:
    the partial last line of a write cut short by a kill or a full disk, or bytes some other program put
    there (one bad line costs that line, never the file)."""
    entries = []
    for line in Path(path).read_bytes().splitlines():
        try:
            entry = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is a ValueError
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


__all__ = ["DamagedFileError", "NoSpaceError", "naming_full_disk", "plain_mode", "atomic_file", "all_or_nothing",
           "atomic_write",
           "write_text", "json_safe", "to_json", "write_json", "load_json", "read_json", "append_jsonl", "read_jsonl",
           "write_jsonl", "exclusive_lock"]
