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

from mardini_bench.config import ConfigError, RunConfig, from_dict
from mardini_bench.io import DamagedFileError, exclusive_lock, load_json, read_json
from mardini_bench.run.result_file import failure_summary, load_result

# The files of a run folder that a state and the results table are read from, besides result.json
# (`result_file.RESULT`): the sweep writes the config, the overrides and submitted.json (`sweep.rundir`),
# its job started.json and failed.json, and holds run.lock while it runs.
CONFIG, OVERRIDES = "config.json", "overrides.json"
SUBMITTED, STARTED, FAILED = "submitted.json", "started.json", "failed.json"
LOCK = "run.lock"
MANIFEST = "sweep.json"  # in the sweep folder: the points of its latest launch (`sweep.plan.write_manifest`)
# DAMAGED: result.json or config.json exists but cannot be read as what it should be
# LOST: a job started there and no job holds its run lock any more, without a result or a failure (kill -9,
# a stopped sweep, a crash of the machine); launching the sweep again resumes it from its last checkpoint
STATES = ("DONE", "FAILED", "DAMAGED", "LOST", "RUNNING", "PENDING", "MISSING")


def read_manifest(sweep_dir: Path) -> Dict[str, Any]:
    """A sweep folder's sweep.json (what its latest launch asked for: its `points`, each with idx, run_id
    and overrides); FileNotFoundError when absent, `DamagedFileError` naming the file when unusable."""
    path = Path(sweep_dir) / MANIFEST
    data = load_json(path)
    points = data.get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) and {"idx", "run_id", "overrides"} <= set(p)
                                               for p in points):
        raise DamagedFileError(f"{path}: no valid 'points' list (objects with idx, run_id, overrides)")
    return data


def load_config(run_dir: Path) -> RunConfig:
    """The RunConfig in the folder's config.json; FileNotFoundError when absent, `DamagedFileError` naming
    the file when it is truncated or holds a key or value no config has."""
    path = run_dir / CONFIG
    data = load_json(path)
    try:
        return from_dict(RunConfig, data)
    except ConfigError as err:
        raise DamagedFileError(f"{path}: {err}") from None


def damage(run_dir: Path) -> str:
    """The fault of the run's result.json or config.json, '' when each is absent or sound (result.json's
    records are checked by `load_result`, config.json by `load_config`)."""
    try:
        load_result(run_dir)
        load_config(run_dir)
    except FileNotFoundError:
        pass
    except DamagedFileError as err:
        return str(err)
    return ""


def read_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The run's result, or None: only a complete result.json of a finished run, in a folder whose files
    are sound, counts (a damaged one is redone by the next launch; `run_state` reports it)."""
    if damage(run_dir):
        return None
    result = load_result(run_dir)
    return result if result is not None and result.get("status", "DONE") == "DONE" else None


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (non-zombie) process on this host."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def lock_held(run_dir: Path) -> bool:
    """True if a job holds the folder's run lock right now (a `flock`, which the kernel frees when its
    holder dies, however it dies: unlike a pid, it cannot be mistaken for another process)."""
    if not (run_dir / LOCK).exists():
        return False
    with exclusive_lock(run_dir / LOCK, block=False) as free:
        return not free


def run_state(run_dir: Path) -> Tuple[str, str]:
    """(state, detail) from the folder alone: DAMAGED (+ the fault), DONE, FAILED (+ message), RUNNING (its
    run lock is held), LOST (+ why), PENDING or MISSING."""
    fault = damage(run_dir)
    if fault:
        return "DAMAGED", fault
    if read_result(run_dir) is not None:
        return "DONE", ""
    failed = read_json(run_dir / FAILED)
    if failed is not None:
        return "FAILED", failure_summary(failed)
    if lock_held(run_dir):
        return "RUNNING", ""
    return _unheld(run_dir)


def _unheld(run_dir: Path) -> Tuple[str, str]:
    """The state of a folder whose run lock no job holds: LOST if a job started there, else PENDING
    (submitted) or MISSING."""
    try:
        started = load_json(run_dir / STARTED)
    except FileNotFoundError:
        return ("PENDING", "") if read_json(run_dir / SUBMITTED) is not None else ("MISSING", "")
    except DamagedFileError as err:  # cut short as the job wrote it: a job did start
        return "LOST", f"{err}; no job holds the folder: launching the sweep again resumes it"
    host = started.get("host")
    if host not in (None, this_host()):  # a lock taken on another host may not be visible from this one
        return "RUNNING", f"started on {host}; its run lock cannot be checked from {this_host()}"
    return "LOST", (f"its job (process {started.get('pid')}) ended without a result; launching the sweep again "
                    f"resumes it")
