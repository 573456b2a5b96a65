"""A catalogue of bad inputs a new user types, run through the real command lines.

Every case must end with exit code != 0 and exactly one stderr line, `error: ...`, that names the
culprit (the key, option or file); no traceback, and no folder, temp file or half-written file left
behind. Cases stop before training (plan-time validation, `--dry-run`, or a damaged sweep folder),
so each costs one interpreter start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

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
    # sweep options and grid values, refused before anything is written
    "negative array parallelism": (sweep("--array-parallelism", "-1"), "--array-parallelism: got -1"),
    "negative timeout": (sweep("--timeout-min", "-1"), "--timeout-min: got -1"),
    "zero memory": (sweep("--mem-gb", "0"), "--mem-gb: got 0.0, must be > 0"),
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
