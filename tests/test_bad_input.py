"""A catalogue of bad inputs a new user types, run through the real command lines.

Every case must end with exit code != 0 and exactly one stderr line, `error: ...`, that names the
culprit (the key, option or file); no traceback, and no folder, temp file or half-written file left
behind. Cases stop before training (plan-time validation, `--dry-run`, or a damaged sweep folder),
so each costs one interpreter start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from mardini_bench.sweep.rundir import pid_alive

REPO = Path(__file__).resolve().parents[1]
GRID = 'name = "bad"\nbase = ["model=tiny", "train.steps=2"]\n[grid]\n"model.planner.depth" = [1, 2]\n'

# A case: (argv after `python -m`, given the scratch folder; text the error line must contain).
Case = Tuple[Callable[[Path], List[str]], str]


def runner(*overrides: str) -> Callable[[Path], List[str]]:
    return lambda tmp: ["mardini_bench.runner", str(tmp / "run"), "model=tiny", *overrides]


def sweep(*args: str) -> Callable[[Path], List[str]]:
    return lambda tmp: ["mardini_bench.sweep", str(_grid(tmp)), "--results", str(tmp / "results"), *args]


def _grid(tmp: Path) -> Path:
    path = tmp / "bad.toml"
    path.write_text(GRID)
    return path


def _bad_weights(tmp: Path) -> List[str]:
    """A weights folder whose I3D file is not the network: refused before training, not after it."""
    (tmp / "w").mkdir()
    (tmp / "w" / "i3d_kinetics400_tfhub.pt").write_bytes(b"not the network")
    return ["mardini_bench.runner", str(tmp / "run"), "model=tiny", f"eval.weights={tmp / 'w'}"]


def status_of(sweep_json: str) -> Callable[[Path], List[str]]:
    def argv(tmp: Path) -> List[str]:
        (tmp / "s").mkdir(exist_ok=True)
        (tmp / "s" / "sweep.json").write_text(sweep_json)
        return ["mardini_bench.sweep", "status", str(tmp / "s")]
    return argv


CASES: Dict[str, Case] = {
    # values the types allow but no run can use (runner CLI: before the run folder exists)
    "negative steps": (runner("train.steps=-5"), "train.steps: got -5, must be >= 1"),
    "zero batch": (runner("train.batch_size=0"), "train.batch_size: got 0"),
    "zero eval videos": (runner("eval.num_videos=0"), "eval.num_videos: got 0"),
    "nan lr": (runner("train.lr=nan"), "train.lr: got nan"),
    "negative grad clip": (runner("train.grad_clip=-1"), "train.grad_clip: got -1.0"),
    "zero heads": (runner("model.planner.heads=0"), "model.planner.heads: got 0"),
    "heads not dividing dim": (runner("model.planner.heads=7"), "model.planner.heads: 7 does not split"),
    "negative depth": (runner("model.planner.depth=-3"), "model.planner.depth: got -3"),
    "resolution off the codec grid": (runner("data.resolution=30"), "data.resolution: 30 is not a multiple of 8"),
    "probability above 1": (runner("model.generator.cfg_drop_prob=2"), "model.generator.cfg_drop_prob: got 2.0"),
    "misspelt key": (runner("train.stpes=3"), "did you mean 'train.steps'"),
    "unknown component": (runner("model.planner.name=marr"), "unknown planner 'marr'"),
    "not key=value": (runner("train.steps"), "'train.steps' is not of the form key=value"),
    "negative skip count": (runner("train.skip_nonfinite=-1"), "train.skip_nonfinite: got -1"),
    "model shape in params": (lambda tmp: ["mardini_bench.params", "tiny", "model.generator.heads=5"],
                              "model.generator.heads: 5 does not split model.generator.dim=48"),
    "wrong weight file": (lambda tmp: _bad_weights(tmp), "i3d_kinetics400_tfhub.pt has sha256"),
    # sweep options and grid values, refused before anything is written
    "negative array parallelism": (sweep("--array-parallelism", "-1"), "--array-parallelism: got -1"),
    "negative timeout": (sweep("--timeout-min", "-1"), "--timeout-min: got -1"),
    "zero memory": (sweep("--mem-gb", "0"), "--mem-gb: got 0.0, must be > 0"),
    "flag value of the wrong type": (sweep("--array-parallelism", "x"), "--array-parallelism: invalid int value: 'x'"),
    "unknown flag": (lambda tmp: ["mardini_bench.params", "--bogus"], "unrecognized arguments: --bogus"),
    "bad value on a dry run": (sweep("--dry-run", "train.batch_size=0"), "train.batch_size: got 0"),
    "missing grid": (lambda tmp: ["mardini_bench.sweep", str(tmp / "nope.toml")], "nope.toml' not found"),
    # damaged or missing sweep folders
    "sweep.json without points": (status_of('{"name": "bad"}'), "sweep.json: no valid 'points' list"),
    "truncated sweep.json": (status_of('{"name": "ba'), "sweep.json: damaged JSON"),
    "not a sweep folder": (lambda tmp: ["mardini_bench.sweep", "status", str(tmp)], "is not a sweep folder"),
    "collect a missing folder": (lambda tmp: ["mardini_bench.sweep", "collect", str(tmp / "gone")], "gone"),
}


def leftovers(tmp: Path) -> List[str]:
    """Files a failed command must not leave: temp files, and anything under run/ or results/."""
    temp = [p for p in tmp.rglob("*") if p.name.endswith((".tmp", ".temp")) or p.name.startswith(".")]
    made = [p for p in (tmp / "run", tmp / "results") if p.exists()]
    return [str(p.relative_to(tmp)) for p in temp + made]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_and_leaves_nothing(case, tmp_path):
    argv, needle = CASES[case]
    done = subprocess.run([sys.executable, "-m", *argv(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert leftovers(tmp_path) == []


def test_sigterm_to_a_local_sweep_stops_its_runs(tmp_path):
    """Killing a local sweep (SIGTERM, as a session logout or `kill` sends) must not leave its runs
    training as orphans."""
    grid = tmp_path / "long.toml"
    grid.write_text('name = "long"\nbase = ["model=tiny", "train.steps=100000", "eval.metrics=[psnr]"]\n'
                    'seeds = [0, 1]\n')
    sweep = subprocess.Popen([sys.executable, "-m", "mardini_bench.sweep", str(grid), "--results",
                              str(tmp_path / "results"), "--cluster", "local", "--no-report"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: List[Path] = []
    deadline = time.time() + 180
    while len(started) < 2 and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.5)
        started = list((tmp_path / "results" / "long").glob("*/started.json"))
    assert len(started) == 2, sweep.stderr.read() if sweep.poll() is not None else "runs did not start"
    pids = [json.loads(path.read_text())["pid"] for path in started]
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=90)
    assert sweep.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopped 2 local run(s)" in err
    deadline = time.time() + 10
    while any(pid_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(pid_alive(pid) for pid in pids)


def test_a_run_whose_process_died_is_lost_not_running(tmp_path):
    from mardini_bench.sweep import rundir

    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid existed and is gone now
    started = {"host": rundir.this_host(), "pid": child.pid}
    rundir.write_json(tmp_path / rundir.STARTED, started)
    state, detail = rundir.run_state(tmp_path)
    assert state == "LOST" and f"process {started['pid']} is gone" in detail
    rundir.write_json(tmp_path / rundir.STARTED, {"host": rundir.this_host(), "pid": os.getpid()})
    assert rundir.run_state(tmp_path) == ("RUNNING", "")


@pytest.mark.parametrize("values, needle", [
    (float("nan"), "values are NaN or infinite"),
    (200.0, "looks like 0..255"),
    (1.3, "must lie in [0, 1], got [1.3"),
])
def test_metrics_refuse_videos_that_are_not_frames(values, needle):
    """A PSNR of all-NaN clips, or of floats in 0..255, is a number about nothing: refuse it by name."""
    import torch

    from mardini_bench.registry import METRICS

    real = torch.full((1, 2, 3, 8, 8), 0.5)
    fake = torch.full((1, 2, 3, 8, 8), values)
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("(", r"\(")):
        METRICS.build("psnr").update(real, fake)
    METRICS.build("psnr").update(real, torch.full_like(real, 1.0 + 1e-4))  # rounding slack is fine
