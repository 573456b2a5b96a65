"""Run folders: the files a sweep point owns, written atomically, and its state read back from them.

A run folder `<sweep>/<run_id>/` is the source of truth for its run::

    config.json      resolved RunConfig          overrides.json  the point's overrides
    git.json         code SHA + dirty flag       submitted.json  cluster, job id (launcher)
    started.json     host, pid, job id (job)     log.jsonl, last.pt  written by the runner
    result.json      final metrics (runner)      failed.json     exception of the last attempt
    run.lock         held while a job runs in the folder (released by the kernel if it dies)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

CONFIG, OVERRIDES, GIT = "config.json", "overrides.json", "git.json"
SUBMITTED, STARTED, RESULT, FAILED, LOCK = "submitted.json", "started.json", "result.json", "failed.json", "run.lock"
# DAMAGED: result.json or config.json exists but cannot be read as what it should be
STATES = ("DONE", "FAILED", "DAMAGED", "RUNNING", "PENDING", "MISSING")


class DamagedFileError(ValueError):
    """A file that exists but cannot be used (unreadable, truncated, malformed, wrong type); the
    message names the file and the fault."""


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


def write_json(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, then `os.replace` it: readers never see half a file.
    Non-finite floats are written as null (`json_safe`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the rest of a shared group
        with os.fdopen(fd, "w") as f:
            json.dump(json_safe(data), f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _json_name(tp: Any) -> str:
    if isinstance(tp, tuple):
        return " or ".join(_json_name(t) for t in tp)
    return _JSON_NAMES.get(tp, tp.__name__)


def load_json(path: Path, expect: Any = dict) -> Any:
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


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """The objects of a JSON-lines file (log.jsonl), leaving out any line that is not a whole JSON
    object: the partial last line of a write cut short by a kill or a full disk."""
    entries = []
    for line in Path(path).read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in `path`, or None when it is absent or damaged: for markers (submitted.json,
    started.json, failed.json) whose damage means no more than their absence."""
    try:
        return load_json(path)
    except (FileNotFoundError, DamagedFileError):
        return None


def load_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    """result.json as written by the runner, or None when absent; `DamagedFileError` when truncated
    or wrong-typed (records not a list of {task, method, metric} objects, train/cost/config not objects)."""
    path = run_dir / RESULT
    try:
        result = load_json(path)
    except FileNotFoundError:
        return None
    for key in ("train", "cost", "config"):
        if not isinstance(result.get(key, {}), dict):
            raise DamagedFileError(f"{path}: '{key}' must be a JSON object, got {result[key]!r:.40}")
    records = result.get("records", [])
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"task", "method", "metric"} <= set(r)
                                                for r in records):
        raise DamagedFileError(f"{path}: 'records' must be a list of objects with task, method and metric")
    return result


def read_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The run's result, or None: only a complete, undamaged result.json of a finished run counts
    (a damaged one is rewritten by the next attempt; `run_state` reports it)."""
    try:
        result = load_result(run_dir)
    except DamagedFileError:
        return None
    return result if result is not None and result.get("status", "DONE") == "DONE" else None


def damage(run_dir: Path) -> str:
    """The fault of the run's result.json or config.json, '' when both are absent or sound."""
    try:
        load_result(run_dir)
        load_json(run_dir / CONFIG)
    except FileNotFoundError:
        pass
    except DamagedFileError as err:
        return str(err)
    return ""


def git_info(repo: Path) -> Dict[str, Any]:
    """SHA and dirty flag of the code at `repo`; None values (and the reason) without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError) as err:
        return {"sha": None, "dirty": None, "error": f"{type(err).__name__}: {err}".splitlines()[0]}


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (non-zombie) process on this host."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def exclusive_lock(path: Path, block: bool = True) -> Iterator[bool]:
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


class RunLock:
    """An exclusive `flock` on `run.lock`: one job per run folder; freed by the kernel on kill -9."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._held = contextlib.ExitStack()

    def acquire(self) -> bool:
        """Take the lock without blocking; False if another process holds it."""
        if not self._held.enter_context(exclusive_lock(self.path, block=False)):
            self.release()
            return False
        return True

    def release(self) -> None:
        self._held.close()  # closing the file drops the flock; a second call is a no-op


def lock_held(run_dir: Path) -> bool:
    """True if a job is running in `run_dir` right now (on a filesystem where flock is shared)."""
    if not (run_dir / LOCK).exists():
        return False
    lock = RunLock(run_dir)
    free = lock.acquire()
    lock.release()
    return not free


def run_state(run_dir: Path) -> Tuple[str, str]:
    """(state, detail) from the folder alone: DONE, DAMAGED (+ the fault), FAILED (+ message), RUNNING,
    PENDING or MISSING."""
    if read_result(run_dir) is not None:
        return "DONE", ""
    fault = damage(run_dir)
    if fault:
        return "DAMAGED", fault
    failed = read_json(run_dir / FAILED)
    if failed is not None:
        return "FAILED", f"{failed.get('type', 'Error')}: {failed.get('message', '')}"
    started = read_json(run_dir / STARTED)
    if started is not None:
        return "RUNNING", _liveness(started)
    if read_json(run_dir / SUBMITTED) is not None:
        return "PENDING", ""
    return "MISSING", ""


def _liveness(started: Dict[str, Any]) -> str:
    # A local job killed with -9 leaves started.json behind; say so rather than guess a state.
    pid, host = started.get("pid"), started.get("host")
    if host == this_host() and isinstance(pid, int) and not pid_alive(pid):
        return f"process {pid} is gone"
    return ""
