"""The state of a run, read from its folder alone: the one definition that the sweep's `status` and the
results table (`analysis.results.collect`) share.

A light module on purpose (no torch, no pandas): the sweep imports it for `status`, and the results
table for its `status` column, so both say the same thing about the same folder.

    state, detail = run_state(run_dir)     # ("DONE", ""), ("FAILED", "RuntimeError: ..."), ...
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from mardini_bench.io import DamagedFileError, load_json, read_json
from mardini_bench.run.result_file import failure_summary, load_result

# The files of a run folder that a state and the results table are read from, besides result.json
# (`result_file.RESULT`): the sweep writes the config, the overrides and submitted.json (`sweep.rundir`),
# its job started.json and failed.json.
CONFIG, OVERRIDES = "config.json", "overrides.json"
SUBMITTED, STARTED, FAILED = "submitted.json", "started.json", "failed.json"
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


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (non-zombie) process on this host."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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
