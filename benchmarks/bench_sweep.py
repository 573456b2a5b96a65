"""Local sweep overhead per job: what the sweep machinery costs beyond the runs' own work.

    python benchmarks/bench_sweep.py                 # 8 runs, all at once, then 2 at a time
    python benchmarks/bench_sweep.py --runs 16 --work-s 0.5

Each run's function sleeps `--work-s` and writes a one-record result (no torch work), so what is
left of the wall time is the sweep's own cost: planning and validating the grid, preparing run
folders, submitit's pickling and subprocess start (a Python interpreter importing torch per job),
the run lock, result writes, status, collect. Printed: wall seconds of the sweep command, the ideal
(runs x work / parallel slots), and the overhead per job, measured in this one invocation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from mardini_bench.args import script_parser

HERE = Path(__file__).resolve().parent


def sleep_run(cfg, run_dir: Path) -> dict:
    """The job: `work_s` of wall time (from $BENCH_SWEEP_WORK_S), then a result like the runner's."""
    from mardini_bench.sweep import rundir

    time.sleep(float(os.environ.get("BENCH_SWEEP_WORK_S", "0")))
    result = {"run_id": Path(run_dir).name, "status": "DONE", "records": [
        {"task": "interpolation", "method": "model", "metric": "psnr", "value": float(cfg.seed),
         "protocol": {"implementation": "bench"}}]}
    rundir.write_json(Path(run_dir) / "result.json", result)
    return result


def grid_text(runs: int) -> str:
    seeds = ", ".join(str(s) for s in range(runs))
    return f'name = "bench"\nbase = ["model=tiny"]\nseeds = [{seeds}]\n'


def time_sweep(runs: int, work_s: float, window: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "bench.toml"
        grid.write_text(grid_text(runs))
        env = dict(os.environ, BENCH_SWEEP_WORK_S=str(work_s),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", "mardini_bench.sweep", str(grid), "--results", str(Path(tmp) / "results"),
               "--cluster", "local", "--run-fn", "bench_sweep:sleep_run", "--no-report",
               "--array-parallelism", str(window)]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"sweep failed:\n{out.stdout}\n{out.stderr}")
        done = sum(1 for p in (Path(tmp) / "results" / "bench").glob("*/result.json"))
        if done != runs:
            raise SystemExit(f"expected {runs} results, found {done}")
    return wall


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--work-s", type=float, default=2.0, help="seconds of (sleeping) work per run")
    ap.add_argument("--windows", type=int, nargs="+", default=[8, 2], help="runs at once, one sweep each")
    args = ap.parse_args(argv)
    rows = []
    for window in args.windows:
        wall = time_sweep(args.runs, args.work_s, window)
        waves = -(-args.runs // min(window, args.runs))
        ideal = waves * args.work_s
        rows.append({"runs": args.runs, "at_once": window, "wall_s": round(wall, 2), "ideal_s": ideal,
                     "overhead_per_job_s": round((wall - ideal) / args.runs, 3),
                     "wall_over_ideal": round(wall / ideal, 2) if ideal else None})
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
