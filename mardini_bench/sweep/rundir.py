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
import socket
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

# Re-exported: run folders are read and written with the toolkit's one set of file helpers.
from mardini_bench.io import (DamagedFileError, exclusive_lock, json_safe, load_json, read_json,  # noqa: F401
                              read_jsonl, write_json)
from mardini_bench.result_file import RESULT, failure_summary, load_result  # noqa: F401 (runner writes it)

CONFIG, OVERRIDES, GIT = "config.json", "overrides.json", "git.json"
SUBMITTED, STARTED, FAILED, LOCK = "submitted.json", "started.json", "failed.json", "run.lock"
# DAMAGED: result.json or config.json exists but cannot be read as what it should be
# LOST: started on this host, but its process is gone without a result or a failure (kill -9, a crash
# of the machine); launching the sweep again resumes it from its last checkpoint
STATES = ("DONE", "FAILED", "DAMAGED", "LOST", "RUNNING", "PENDING", "MISSING")


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
    """(state, detail) from the folder alone: DONE, DAMAGED (+ the fault), FAILED (+ message), LOST (+ the
    process), RUNNING, PENDING or MISSING."""
    if read_result(run_dir) is not None:
        return "DONE", ""
    fault = damage(run_dir)
    if fault:
        return "DAMAGED", fault
    failed = read_json(run_dir / FAILED)
    if failed is not None:
        return "FAILED", failure_summary(failed)
    started = read_json(run_dir / STARTED)
    if started is not None:
        gone = _gone(started)
        return ("LOST", f"process {gone} is gone; launching the sweep again resumes it") if gone else ("RUNNING", "")
    if read_json(run_dir / SUBMITTED) is not None:
        return "PENDING", ""
    return "MISSING", ""


def _gone(started: Dict[str, Any]) -> Optional[int]:
    """The pid of a job that started on this host and whose process no longer exists, else None (a job
    on another host cannot be checked from here)."""
    pid, host = started.get("pid"), started.get("host")
    if host == this_host() and isinstance(pid, int) and not pid_alive(pid):
        return pid
    return None
