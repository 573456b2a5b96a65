"""Launch options and submission through submitit: one job array per sweep, never blocking on SLURM."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import submitit

from mardini_bench.sweep import rundir
from mardini_bench.sweep.grid import GridError
from mardini_bench.sweep.job import RunJob

CLUSTERS = ("slurm", "local", "debug")
SUBMISSION_LOG = "submission.err"  # in the submitit folder: stderr of sbatch and of the local controllers


class LaunchError(RuntimeError):
    """The scheduler refused the submission (no sbatch, controller down, bad sbatch option)."""


@dataclass(frozen=True)
class LaunchOptions:
    """Resources per run; from the grid's [slurm] table, then the command line."""

    partition: Optional[str] = None  # None: the cluster's default partition
    nodes: Optional[int] = None  # nodes per run (FSDP/DDP over nodes); None: 1
    tasks_per_node: Optional[int] = None  # processes per node, one per GPU for multi-GPU runs; None: 1
    gpus_per_node: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    # > 10 min: submitit counts every USR2 as a timeout when timeout_min <= 10 (guaranteed time < 0),
    # which would spend the requeue budget on preemptions. Also the local executor's time limit.
    timeout_min: int = 60
    array_parallelism: Optional[int] = None  # most runs at once (SLURM array %N; local too); None: all
    additional_parameters: Dict[str, Any] = field(default_factory=dict)  # extra sbatch options
    setup: Tuple[str, ...] = ()  # shell lines run before the job (module load, venv activation)


# Smallest valid value of each numeric option: a negative --array-parallelism would wait for a free
# slot forever, a negative --timeout-min leaves every run PENDING. mem_gb must be above its minimum.
_MINIMUM = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 0, "timeout_min": 1, "array_parallelism": 1}

_TYPES = {"partition": str, "nodes": int, "tasks_per_node": int, "gpus_per_node": int, "cpus_per_task": int, "mem_gb": (int, float),
          "timeout_min": int, "array_parallelism": int, "additional_parameters": dict, "setup": (list, tuple)}


def launch_options(table: Mapping[str, Any], source: str) -> LaunchOptions:
    """Validate a [slurm] table (or the CLI's equivalent): unknown keys and wrong types fail here."""
    for key, value in table.items():
        if key not in _TYPES:
            raise GridError(f"{source} [slurm]: unknown option '{key}'; valid: {', '.join(_TYPES)}")
        if isinstance(value, bool) or not isinstance(value, _TYPES[key]):
            raise GridError(f"{source} [slurm] {key}: wrong type {type(value).__name__} ({value!r})")
        check_range(key, value, f"{source} [slurm] {key}")
    if not all(isinstance(line, str) for line in table.get("setup", ())):
        raise GridError(f"{source} [slurm] setup: expected a list of shell lines (strings)")
    values = dict(table, setup=tuple(table.get("setup", ())))
    return LaunchOptions(**values)


def check_range(key: str, value: Any, where: str) -> None:
    """A numeric launch option below its minimum (or NaN) is a one-line `GridError` naming `where`."""
    if key not in _MINIMUM or value is None:
        return
    low = _MINIMUM[key]
    if key == "mem_gb" and not value > low:
        raise GridError(f"{where}: got {value!r}, must be > {low}")
    if not value >= low:
        raise GridError(f"{where}: got {value!r}, must be >= {low}")


def merge(options: LaunchOptions, cli: Mapping[str, Any]) -> LaunchOptions:
    """Command-line values (None = not given) win over the grid's; extra sbatch options merge."""
    given = {k: v for k, v in cli.items() if v is not None and v != () and v != {}}
    extra = {**options.additional_parameters, **given.pop("additional_parameters", {})}
    setup = options.setup + tuple(given.pop("setup", ()))
    return dataclasses.replace(options, **given, additional_parameters=extra, setup=setup)


def executor_parameters(options: LaunchOptions, name: str) -> Dict[str, Any]:
    """Parameters for `submitit.AutoExecutor.update_parameters` (slurm_* ones are ignored locally)."""
    params: Dict[str, Any] = {"name": name, "timeout_min": options.timeout_min}
    generic = {"nodes": options.nodes, "tasks_per_node": options.tasks_per_node,
               "gpus_per_node": options.gpus_per_node, "cpus_per_task": options.cpus_per_task,
               "mem_gb": options.mem_gb, "slurm_partition": options.partition,
               "slurm_array_parallelism": options.array_parallelism}
    params.update({k: v for k, v in generic.items() if v is not None})
    if options.additional_parameters:
        params["slurm_additional_parameters"] = dict(options.additional_parameters)
    if options.setup:
        params["slurm_setup"] = list(options.setup)
    return params


def make_executor(folder: Path, cluster: str, options: LaunchOptions, name: str) -> Any:
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        executor.update_parameters(**executor_parameters(options, name))
    except Exception as err:  # e.g. cluster=slurm where no sbatch is installed
        raise LaunchError(f"cannot use cluster '{cluster}': {str(err).strip().splitlines()[-1]}") from None
    return executor


def sbatch_preview(folder: Path, options: LaunchOptions, name: str) -> List[str]:
    """The `#SBATCH` lines and the `srun` line submitit would write for one run of these options (built
    by submitit itself, so what a dry run prints is what is submitted). Nothing is queued or created:
    submitit renders into a temporary folder, whose name is then replaced by `folder`."""
    with tempfile.TemporaryDirectory() as tmp:
        executor = make_executor(Path(tmp), "slurm", options, name)
        text = executor._executor._make_submission_file_text(f"python -m submitit.core._submit {tmp}", "%j")
    return [line.replace(tmp, str(folder)) for line in text.splitlines() if line.startswith(("#SBATCH", "srun"))]


def submit(executor: Any, run_dirs: Sequence[Path], run_fn: Any) -> List[Any]:
    """Submit one `RunJob` per folder as a single job array; record each job id in its folder."""
    try:
        with submission_stderr(Path(executor.folder) / SUBMISSION_LOG), executor.batch():
            jobs = [executor.submit(RunJob(d, run_fn)) for d in run_dirs]
    except Exception as err:  # submitit passes sbatch's stderr through; one line says it all
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise LaunchError(f"submission to {executor.cluster} failed, nothing was queued: "
                          f"{'; '.join(lines[-2:]) or type(err).__name__}") from None
    for run_dir, job in zip(run_dirs, jobs):
        rundir.write_json(run_dir / rundir.SUBMITTED, {"cluster": executor.cluster, "job_id": str(job.job_id),
                                                       "folder": str(executor.folder), "submitted_at": time.time()})
    return jobs


# The one stop path of a launch: Ctrl-C (SIGINT, to the process or its whole process group), SIGTERM
# (kill, a logout) and SIGHUP (a closed terminal) all end it the same way.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_WAIT_S = 30.0  # how long a stop waits for its local runs to end
KILL_AFTER_S = 10.0  # a run still alive this long after its SIGINT gets SIGKILL (its checkpoints are atomic)
alive = rundir.pid_alive


@contextlib.contextmanager
def stop_on_signals(jobs: List[Any], cluster: str) -> Iterator[None]:
    """While the body runs, any of STOP_SIGNALS stops the local runs in `jobs` (a list the body appends
    to as runs start), prints one line on stderr and exits 128 + signal, with no traceback: a killed
    sweep must not leave its runs training as orphans. Stopped runs keep their last checkpoint, show
    LOST and resume on the next launch. Runs queued on SLURM are not the launcher's to stop."""
    def stop(signum: int, _frame: Any) -> None:
        for sig in STOP_SIGNALS:  # a second Ctrl-C while the runs stop must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        print(f"{signal.Signals(signum).name}: {stop_runs(jobs, cluster)}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    # A handler, unlike an inherited SIG_IGN (`nohup ... &` starts the sweep with SIGINT ignored), resets to
    # the default in the processes the launch starts, so its runs still stop on the SIGINT a stop sends.
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_runs(jobs: Sequence[Any], cluster: str) -> str:
    """Stop the live local jobs (SIGINT to each; submitit's controller then stops its run, with SIGKILL
    after a second), wait up to STOP_WAIT_S for them to end, and say what happened."""
    if cluster == "debug":  # its run is in this process: the exit that follows stops it
        return "stopped the run in progress; launching again resumes it" if jobs else "stopped before any run"
    if cluster != "local":
        return f"stopped; {len(jobs)} run(s) already queued keep their place" if jobs else "stopped before any run"
    live = [job for job in jobs if not job.done()]
    pids = [pid for pid in map(run_pid, live) if pid is not None]
    for job in live:
        job.cancel()
    start = time.time()
    while time.time() - start < STOP_WAIT_S and (any(not job.done() for job in live) or any(map(alive, pids))):
        if time.time() - start > KILL_AFTER_S:  # a controller cut short by a second SIGINT never sends its SIGKILL
            for pid in filter(alive, pids):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    left = [str(job.job_id) for job in live if not job.done()] + [f"pid {pid}" for pid in pids if alive(pid)]
    if left:
        return f"stopping {len(live)} local run(s); still running after {STOP_WAIT_S:g} s: {' '.join(left)}"
    return f"stopped {len(live)} local run(s); launching again resumes them"


def run_pid(job: Any) -> Optional[int]:
    """The process of the run a local job started (its folder's started.json), None before it started."""
    try:
        run_dir = Path(job.submission().function.run_dir)
    except Exception:  # no submission pickle, or a job of some other function
        return None
    started = rundir.read_json(run_dir / rundir.STARTED) or {}
    pid = started.get("pid")
    return pid if isinstance(pid, int) and started.get("host") == rundir.this_host() else None


@contextlib.contextmanager
def submission_stderr(path: Path) -> Iterator[None]:
    """While the body submits, stderr (this process's, and that of the processes it starts) goes to
    `path`, not the terminal: submitit prints sbatch's refusal itself (the one error line that follows
    says it), and the local controllers it starts inherit stderr and print a KeyboardInterrupt
    traceback on the SIGINT that stops them (their runs log to their own files)."""
    sys.stderr.flush()
    saved = os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:  # line by line, in order with what the children write
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()
            os.dup2(saved, 2)
            os.close(saved)


def submit_windowed(executor: Any, run_dirs: Sequence[Path], run_fn: Any, window: int,
                    poll_s: float = 1.0, jobs: Optional[List[Any]] = None,
                    after: Optional[Mapping[Path, Path]] = None) -> List[Any]:
    """Local runs with at most `window` running at once (`array_parallelism`): submitit's local
    executor starts a whole array together, which on a laptop can exhaust memory. Each run is
    started as a slot frees up; returns once the last one has started. `jobs`: a list to append the
    started jobs to as they start (what `stop_on_signals` watches).

    `after` maps a run to the earlier run that trains the same weights (`training_siblings`): it starts
    once that one has ended, so that it evaluates the finished weights instead of training them again;
    a free slot goes to the next run that need not wait."""
    jobs = [] if jobs is None else jobs
    after = after or {}
    started: Dict[Path, Any] = {}
    queue, running = list(run_dirs), []  # type: List[Path], List[Any]
    while queue:
        running = [job for job in running if not job.done()]
        ready = [d for d in queue if _may_start(after.get(d), queue, started)]
        if len(running) >= window or not ready:
            time.sleep(poll_s)
            continue
        run_dir = ready[0]
        queue.remove(run_dir)
        job = submit(executor, [run_dir], run_fn)[0]
        started[run_dir] = job
        jobs.append(job)
        running.append(job)
    return jobs


def _may_start(sibling: Optional[Path], queue: Sequence[Path], started: Mapping[Path, Any]) -> bool:
    """A run may start unless the run it waits for is still queued or still running."""
    if sibling is None or sibling not in queue and sibling not in started:
        return True  # nothing to wait for, or a sibling finished before this launch
    return sibling in started and started[sibling].done()


def training_siblings(points: Sequence[Tuple[Path, Any]]) -> Dict[Path, Path]:
    """{run folder: the first earlier folder whose config trains the same weights} over (folder, RunConfig)
    pairs: the points of a grid that differ only in how the trained model is sampled or scored (e.g.
    Fig. 6a's DDIM steps). The later ones reuse the first one's training when it has finished."""
    from mardini_bench.config import training_dict

    first: Dict[str, Path] = {}
    siblings = {}
    for run_dir, cfg in points:
        key = json.dumps(training_dict(cfg), sort_keys=True, default=str)
        if key in first:
            siblings[run_dir] = first[key]
        else:
            first[key] = run_dir
    return siblings


def local_threads(n_jobs: int, cpus_per_task: Optional[int], cores: Optional[int] = None) -> int:
    """Threads of each of `n_jobs` local runs at once: an equal share of the cores, and never more than
    the `cpus_per_task` a run asked for (a sweep beside other work, `--cpus-per-task 1`, keeps to it)."""
    from mardini_bench.runtime import available_cores  # here: the runtime imports torch, and status/collect stay light

    share = max(1, (cores or available_cores()) // max(1, n_jobs))
    return min(share, cpus_per_task) if cpus_per_task else share


def share_cores(n_jobs: int, cpus_per_task: Optional[int] = None) -> None:
    """Set the threads of the local runs about to start (`local_threads`), unless the user chose."""
    # Oversubscribed OpenMP threads spin against each other: 4 jobs x 2 threads on 2 cores is slower
    # than 4 x 1, and two sweeps side by side at 2 threads each ran 4-20x slower than at 1 each.
    # Subprocesses inherit the environment, and torch reads this when it starts.
    os.environ.setdefault("OMP_NUM_THREADS", str(local_threads(n_jobs, cpus_per_task)))


def wait(jobs: Sequence[Any]) -> None:
    """Block until every job has ended, however; the run folders record how each one ended."""
    for job in jobs:
        try:
            job.exception()
        except Exception:  # a job killed before writing its result pickle: its folder says so
            pass
