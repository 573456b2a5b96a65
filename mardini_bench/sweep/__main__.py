"""Command line: launch a sweep, or report on one.

    python -m mardini_bench.sweep GRID [key=v1,v2 ...] [--cluster local|slurm|debug] [--dry-run]
                                  [--results DIR] [--partition P --timeout-min M ...]
    python -m mardini_bench.sweep status SWEEP_DIR
    python -m mardini_bench.sweep collect SWEEP_DIR

The same three are `mardini-bench sweep`, `status` and `collect` (`LAUNCH`, `STATUS`, `COLLECT`). The grid
is shown (`#idx run_id : overrides`) before anything is submitted. On SLURM the command returns once the
job array is queued; `local` and `debug` wait for the runs and then collect.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from mardini_bench.args import Command, add_overrides, command_main
from mardini_bench.cli import user_errors
from mardini_bench.io import write_text
from mardini_bench.sweep import launch, plan, rundir, status
from mardini_bench.sweep.grid import Grid, GridError, check_not_empty, load_grid, with_cli_args
from mardini_bench.sweep.job import DEFAULT_RUN_FN, load_run_fn
from mardini_bench.sweep.scheduler import ACTIVE, slurm_states

REPO = Path(__file__).resolve().parents[2]  # the checkout whose SHA goes into git.json


def _key_value(text: str) -> tuple:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def launch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file, e.g. ablations/quickstart.toml")
    add_overrides(p, help="key=v1,v2 adds or replaces an axis; key=v fixes a value")
    p.add_argument("--cluster", choices=launch.CLUSTERS, default="local")
    p.add_argument("--dry-run", action="store_true", help="print the runs and exit")
    p.add_argument("--results", default="results", help="root of sweep folders (default: results)")
    p.add_argument("--no-report", action="store_true", help="local/debug: collect, but skip the report")
    p.add_argument("--run-fn", default=DEFAULT_RUN_FN, help="training function run(cfg, run_dir) -> dict")
    g = p.add_argument_group("resources (override the grid's [slurm] table)")
    g.add_argument("--partition")
    g.add_argument("--nodes", type=int, help="nodes per run (multi-node FSDP/DDP)")
    g.add_argument("--tasks-per-node", type=int, help="processes per node (one per GPU)")
    g.add_argument("--gpus-per-node", type=int)
    g.add_argument("--cpus-per-task", type=int)
    g.add_argument("--mem-gb", type=float)
    g.add_argument("--timeout-min", type=int)
    g.add_argument("--array-parallelism", type=int)
    g.add_argument("--sbatch", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch option, repeatable (e.g. --sbatch qos=high)")
    g.add_argument("--setup", action="append", default=[], metavar="LINE", help="shell line run before each job")


def cli_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The resource flags as launch options (None = not given); out-of-range numbers fail here."""
    options = {"partition": args.partition, "nodes": args.nodes, "tasks_per_node": args.tasks_per_node,
               "gpus_per_node": args.gpus_per_node, "cpus_per_task": args.cpus_per_task,
               "mem_gb": args.mem_gb, "timeout_min": args.timeout_min, "array_parallelism": args.array_parallelism,
               "additional_parameters": dict(args.sbatch), "setup": tuple(args.setup)}
    for key, value in options.items():
        launch.check_range(key, value, f"--{key.replace('_', '-')}")
    return options


def print_plan(grid: Grid, points: Sequence[plan.Point], duplicates: Sequence[tuple]) -> None:
    print(f"sweep {grid.name} ({grid.source}): {len(points)} runs; base: {' '.join(grid.base) or '-'}")
    for p in points:
        print(f"#{p.idx} {p.run_id} : {' '.join(p.overrides) or '(base)'}")
    for idx, same in duplicates:
        print(f"#{idx} resolves to the same config as #{same}: one run")


def _active(sweep_dir: Path, points: Sequence[plan.Point]) -> set:
    """Run ids with a job running in their folder or still queued: resubmitting would duplicate them."""
    submitted = {p.run_id: rundir.read_json(sweep_dir / p.run_id / rundir.SUBMITTED) or {} for p in points}
    queue = slurm_states(s.get("job_id") for s in submitted.values() if s.get("cluster") == "slurm")
    return {p.run_id for p in points if rundir.lock_held(sweep_dir / p.run_id)
            or queue.get(submitted[p.run_id].get("job_id", ""), "") in ACTIVE}


def to_submit(sweep_dir: Path, points: Sequence[plan.Point]) -> List[plan.Point]:
    """Points without a finished result and without a live job; says why each other one is skipped."""
    active = _active(sweep_dir, points)
    todo = []
    for p in points:
        if rundir.read_result(sweep_dir / p.run_id) is not None:
            print(f"#{p.idx} {p.run_id} DONE: skipped")
        elif p.run_id in active:
            print(f"#{p.idx} {p.run_id} still running or queued: skipped")
        else:
            todo.append(p)
    return todo


def submit_points(sweep_dir: Path, grid: Grid, todo: Sequence[plan.Point], args: argparse.Namespace,
                  options: launch.LaunchOptions, executor: Any, jobs: List[Any]) -> None:
    """Prepare the run folders and submit; `jobs` receives each job as it starts."""
    git = rundir.git_info(REPO)
    dirs = [sweep_dir / p.run_id for p in todo]
    for run_dir, p in zip(dirs, todo):
        plan.prepare(run_dir, grid, p, git)
    window = options.array_parallelism
    after = launch.training_siblings([(d, p.config) for d, p in zip(dirs, todo)]) if args.cluster == "local" else {}
    if args.cluster == "local" and (window and window < len(todo) or after):
        window = min(window or len(todo), len(todo))
        launch.share_cores(window, options.cpus_per_task)
        print(f"running {len(todo)} runs locally, at most {window} at once (array_parallelism)"
              + (f"; {len(after)} wait for the run that trains their weights" if after else ""))
        launch.submit_windowed(executor, dirs, args.run_fn, window, jobs=jobs, after=after)
    else:
        if args.cluster == "local":
            launch.share_cores(len(todo), options.cpus_per_task)
        jobs += launch.submit(executor, dirs, args.run_fn)
    print(f"submitted {len(jobs)} runs to {args.cluster}: job ids {' '.join(str(j.job_id) for j in jobs)}")


@contextlib.contextmanager
def undone_if_refused(sweep_dir: Path, jobs: List[Any]) -> Iterator[None]:
    """A launch the scheduler refuses before any job is queued leaves the sweep folder as it was: no new run
    folders (they would read MISSING), its earlier sweep.json, or no sweep folder at all."""
    made = [p for p in (sweep_dir, *sweep_dir.parents) if not p.exists()][-1:]  # the outermost folder it makes
    had = set(sweep_dir.iterdir()) if not made else set()
    manifest = sweep_dir / plan.MANIFEST
    before = manifest.read_text() if manifest.is_file() else None
    try:
        yield
    except launch.LaunchError:
        if not jobs:
            for folder in made or [p for p in sweep_dir.iterdir() if p.is_dir() and p not in had]:
                shutil.rmtree(folder, ignore_errors=True)
            if not made:
                write_text(manifest, before) if before is not None else manifest.unlink(missing_ok=True)
        raise


def collect(sweep_dir: Path) -> None:
    # pandas and scipy (a second to import) for the collect command alone: plan, launch and status stay light
    from mardini_bench.analysis.results import CollectError, ProtocolMismatchError, collect as collect_table

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = collect_table(sweep_dir)
    except (CollectError, ProtocolMismatchError) as err:
        raise GridError(str(err)) from None
    for note in dict.fromkeys(str(w.message) for w in caught):  # one line each, not Python's two
        print(f"warning: {note}", file=sys.stderr)
    print(f"collected {df['run_id'].nunique()} runs, {len(df)} rows -> {sweep_dir / 'results.csv'}")


def report(sweep_dir: Path) -> None:
    """Tables and plots, when the report module is installed; the sweep's results stand without them."""
    if importlib.util.find_spec("mardini_bench.analysis.sweep_report") is None:
        return
    done = subprocess.run([sys.executable, "-m", "mardini_bench.report", str(sweep_dir)])
    if done.returncode != 0:
        print(f"warning: the report exited with {done.returncode}; results.csv is complete", file=sys.stderr)


@user_errors(launch.LaunchError)
def run_launch(args: argparse.Namespace) -> int:
    jobs: List[Any] = []
    with launch.stop_on_signals(jobs, args.cluster):  # from planning on: Ctrl-C is one line, never a traceback
        return launch_sweep(args, jobs)


def launch_sweep(args: argparse.Namespace, jobs: List[Any]) -> int:
    """Plan (every point and the environment checked before anything is written), then submit; local and
    debug runs are waited for, collected and reported."""
    from mardini_bench.runtime import check_environment  # here: it imports torch, and status/collect stay light

    check_environment()  # what every run would refuse: refused once, before any of them is launched
    grid = with_cli_args(load_grid(args.grid), args.overrides)
    options = launch.merge(launch.launch_options(grid.slurm, grid.source), cli_options(args))
    check_not_empty(grid)  # after the file's own faults, which say more
    points, duplicates = plan.resolve(grid)  # every point validated before anything is submitted
    print_plan(grid, points, duplicates)
    if args.dry_run:
        if args.cluster == "slurm" or (options.nodes or 1) > 1:  # multi-node runs are for SLURM only
            lines = launch.sbatch_preview(Path(args.results) / grid.name / "submitit", options, grid.name)
            print("each run is submitted as:\n  " + "\n  ".join(lines))
        return 0
    try:
        load_run_fn(args.run_fn)
    except (ImportError, AttributeError, ValueError) as err:
        raise GridError(f"--run-fn {args.run_fn}: cannot load it ({err})") from None
    sweep_dir = Path(args.results) / grid.name
    with undone_if_refused(sweep_dir, jobs):
        # first: a cluster that is not there (no sbatch) is refused before a run folder is written
        executor = launch.make_executor(sweep_dir / "submitit", args.cluster, options, grid.name)
        todo = to_submit(sweep_dir, points)
        plan.write_manifest(sweep_dir, grid, points, args.cluster)
        if todo:
            submit_points(sweep_dir, grid, todo, args, options, executor, jobs)
    if args.cluster == "slurm":
        print(f"not waiting. follow: python -m {__package__} status {sweep_dir}\n"
              f"then:   python -m {__package__} collect {sweep_dir}")
        return 0
    launch.wait(jobs)
    return finish_local(sweep_dir, grid, args)


def finish_local(sweep_dir: Path, grid: Grid, args: argparse.Namespace) -> int:
    """After local or debug runs: status, collect, report; exit 1 unless every run is DONE."""
    rows = status.sweep_status(sweep_dir)
    print(status.format_status(grid.name, rows))
    collect(sweep_dir)
    if not args.no_report:
        report(sweep_dir)
    return 0 if all(r.state == "DONE" for r in rows) else 1


@user_errors(launch.LaunchError)
def run_status(args: argparse.Namespace) -> int:
    sweep_dir = Path(args.sweep_dir)
    print(status.format_status(status.manifest(sweep_dir).get("name", sweep_dir.name), status.sweep_status(sweep_dir)))
    return 0


@user_errors(launch.LaunchError)
def run_collect(args: argparse.Namespace) -> int:
    collect(Path(args.sweep_dir))
    return 0


def sweep_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", help="a sweep folder, e.g. results/quickstart")


LAUNCH = Command(launch_arguments, run_launch, "Launch a grid: every point is planned and shown (#idx run_id : "
                 "overrides) before anything is submitted; local and debug runs are waited for, then collected and "
                 "reported. A launched sweep's state and results: status SWEEP_DIR, collect SWEEP_DIR.")
STATUS = Command(sweep_dir_argument, run_status, "State of every run of a sweep: DONE, FAILED, DAMAGED, LOST, "
                                                 "RUNNING, PENDING or MISSING.")
COLLECT = Command(sweep_dir_argument, run_collect, "Collect a sweep's results into results.csv and .parquet.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m mardini_bench.sweep`: `status` or `collect` as the first argument picks that command, else
    the arguments launch a grid."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"python -m {__package__}"
    if argv and argv[0] in ("status", "collect"):
        return command_main(STATUS if argv[0] == "status" else COLLECT, argv[1:], f"{prog} {argv[0]}")
    return command_main(LAUNCH, argv, prog)


if __name__ == "__main__":
    sys.exit(main())
