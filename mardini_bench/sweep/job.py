"""The submitted callable: run one sweep point in its run folder, record failure, survive requeue.

`RunJob` holds only the run folder (and, optionally, which function trains). Everything else comes
from disk: the config from `config.json`, progress from the runner's `last.pt`. That is what makes
requeueing safe however it happens: submitit's own checkpoint on USR2 resubmits an empty `RunJob`, and
an external `scontrol requeue` (no signal, so no checkpoint) reruns the originally submitted pickle,
which is just as empty, so both resume from the last checkpoint on disk.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict

import submitit

from mardini_bench.sweep import rundir
from mardini_bench.sweep.rundir import load_config

RunFn = Callable[[Any, Path], Dict[str, Any]]
DEFAULT_RUN_FN = "mardini_bench.run.one_run:run"
# Run functions under an earlier name -> the name they have now: a job queued (or requeued) before the
# module was renamed still finds its function.
RENAMED_RUN_FNS = {"mardini_bench.run.runner:run": DEFAULT_RUN_FN}


def load_run_fn(spec: str) -> RunFn:
    """'package.module:function' -> the function (imported in the job, not pickled)."""
    module, _, name = RENAMED_RUN_FNS.get(spec, spec).partition(":")
    if not module or not name:
        raise ValueError(f"run function {spec!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), name)


def job_info() -> Dict[str, Any]:
    """Who is running this attempt: submitit job id, restart count, host, pid."""
    info: Dict[str, Any] = {"host": rundir.this_host(), "pid": os.getpid(), "started_at": time.time()}
    try:
        env = submitit.JobEnvironment()
        info.update(job_id=env.job_id, cluster=env.cluster, stdout=str(env.paths.stdout))
    except RuntimeError:  # called outside submitit (tests, or `RunJob(...)()` by hand)
        pass
    info["restarts"] = int(os.environ.get("SLURM_RESTART_COUNT", 0))
    return info


def failure_record(err: BaseException) -> Dict[str, Any]:
    return {"type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc(),
            "failed_at": time.time()}


def record_failure(run_dir: Path, err: BaseException) -> None:
    """Write `failed.json`. When even that fails (a full disk), rename `started.json` to it: a rename
    needs no free space, and the run then reads FAILED, not RUNNING, with the reason in the job's log."""
    try:
        rundir.write_json(run_dir / rundir.FAILED, failure_record(err))
    except OSError:
        try:
            os.replace(run_dir / rundir.STARTED, run_dir / rundir.FAILED)
        except OSError:
            pass  # no started.json either: the run reads as before this attempt


def global_rank() -> int:
    """This task's rank in a multi-task submitit job; 0 outside submitit."""
    try:
        return submitit.JobEnvironment().global_rank
    except RuntimeError:
        return 0


def link_logs(run_dir: Path) -> None:
    """Point `run_dir/submitit.{out,err}` at this attempt's submitit logs (replaced atomically)."""
    try:
        paths = submitit.JobEnvironment().paths
    except RuntimeError:
        return
    for name, target in (("submitit.out", paths.stdout), ("submitit.err", paths.stderr)):
        tmp = run_dir / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, run_dir / name)


class RunJob(submitit.helpers.Checkpointable):
    """Train and evaluate the point whose resolved config is in `run_dir/config.json`.

    `run_fn` is `run(cfg, run_dir) -> dict` (default `mardini_bench.run.one_run.run`), given as a
    'module:function' string (imported inside the job) or a callable. A finished run returns its
    result without training again; a failing one leaves `failed.json` and re-raises for submitit.
    """

    def __init__(self, run_dir: str | Path, run_fn: str | RunFn = DEFAULT_RUN_FN) -> None:
        self.run_dir = str(Path(run_dir).absolute())
        self.run_fn = run_fn

    def __call__(self) -> Dict[str, Any]:
        run_dir = Path(self.run_dir)
        if global_rank() != 0:  # multi-task jobs: every rank trains, rank 0 owns the folder
            return self._function()(load_config(run_dir), run_dir)
        lock = rundir.RunLock(run_dir)
        if not lock.acquire():
            raise RuntimeError(f"{run_dir} is in use by another job; not starting a second copy")
        try:
            done = rundir.read_result(run_dir)
            return done if done is not None else self._attempt(run_dir)
        finally:
            lock.release()

    def _attempt(self, run_dir: Path) -> Dict[str, Any]:
        (run_dir / rundir.FAILED).unlink(missing_ok=True)
        rundir.write_json(run_dir / rundir.STARTED, job_info())
        link_logs(run_dir)
        try:
            result = self._function()(load_config(run_dir), run_dir)
        except Exception as err:  # not BaseException: submitit's requeue exit is no failure
            record_failure(run_dir, err)
            raise
        if rundir.read_result(run_dir) is None and result.get("status", "DONE") == "DONE":
            rundir.write_json(run_dir / rundir.RESULT, result)  # a custom run_fn may only return it
        return result

    def _function(self) -> RunFn:
        return load_run_fn(self.run_fn) if isinstance(self.run_fn, str) else self.run_fn

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Resubmit an empty job: progress is in `last.pt`, which the runner wrote atomically."""
        return submitit.helpers.DelayedSubmission(RunJob(self.run_dir, self.run_fn))
