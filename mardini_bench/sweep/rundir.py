"""Run folders: the files a sweep point owns, written atomically; its state is read back from them by
`run/state.py` (re-exported here).

A run folder `<sweep>/<run_id>/` is the source of truth for its run::

    config.json      resolved RunConfig          overrides.json  the point's overrides
    git.json         code SHA + dirty flag       submitted.json  cluster, job id (launcher)
    started.json     host, pid, job id (job)     log.jsonl, last.pt  written by the runner
    result.json      final metrics (runner)      failed.json     exception of the last attempt
    run.lock         held while a job runs in the folder (released by the kernel if it dies)
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any, Dict

# Re-exported: run folders are read and written with the toolkit's one set of file helpers, and a run's
# state has one definition (`run/state.py`), which the results table reads too.
from mardini_bench.io import (DamagedFileError, exclusive_lock, json_safe, load_json, read_json,  # noqa: F401
                              read_jsonl, write_json)
from mardini_bench.run.result_file import RESULT, load_result  # noqa: F401 (the runner writes result.json)
from mardini_bench.run.state import (CONFIG, FAILED, LOCK, MANIFEST, OVERRIDES, STARTED, STATES,  # noqa: F401
                                     SUBMITTED, damage, load_config, lock_held, pid_alive, read_manifest,
                                     read_result, run_state, this_host)

GIT = "git.json"


def git_info(repo: Path) -> Dict[str, Any]:
    """SHA and dirty flag of the code at `repo`; None values (and the reason) without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError) as err:
        return {"sha": None, "dirty": None, "error": f"{type(err).__name__}: {err}".splitlines()[0]}


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
