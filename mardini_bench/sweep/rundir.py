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
from typing import Any, Dict, Iterator, Optional, Tuple

CONFIG, OVERRIDES, GIT = "config.json", "overrides.json", "git.json"
SUBMITTED, STARTED, RESULT, FAILED, LOCK = "submitted.json", "started.json", "result.json", "failed.json", "run.lock"
STATES = ("DONE", "FAILED", "RUNNING", "PENDING", "MISSING")


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


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in `path`, or None when it is absent or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The run's result, or None: only a complete result.json of a finished run counts."""
    result = read_json(run_dir / RESULT)
    return result if result is not None and result.get("status", "DONE") == "DONE" else None


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
    """(state, detail) from the folder alone: DONE, FAILED (+ message), RUNNING, PENDING or MISSING."""
    if read_result(run_dir) is not None:
        return "DONE", ""
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
