"""A catalogue of bad inputs a new user types, run through the real command lines.

Every case must end with exit code != 0 and exactly one stderr line, `error: ...`, that names the
culprit (the key, option or file); no traceback, and no folder, temp file or half-written file left
behind. Cases stop before training (plan-time validation, `--dry-run`, a damaged input file).

Most cases call the command's own `main(argv)` in this process (what `python -m` and the
`mardini-bench` script run), reading fds 1 and 2: an interpreter start with torch costs seconds
each. `SUBPROCESS` cases, at least one per command line, run as real processes to prove the wiring.
"""

from __future__ import annotations

import errno
import importlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest

from mardini_bench.sweep.rundir import pid_alive

REPO = Path(__file__).resolve().parents[1]
GRID = 'name = "bad"\nbase = ["model=tiny", "train.steps=2"]\n[grid]\n"model.planner.depth" = [1, 2]\n'
CORRUPT = "corrupt or truncated video (ffmpeg: Invalid data found when processing input)"
ARRAY_FORM = "holding uint8 videos [N,T,H,W,3] or images [N,H,W,3]"
# `python -m X` -> the module whose main() it runs; "mardini-bench" is the console script
MAINS = {"mardini_bench.runner": "mardini_bench.runner", "mardini_bench.sweep": "mardini_bench.sweep.__main__",
         "mardini_bench.report": "mardini_bench.report", "mardini_bench.metrics": "mardini_bench.metrics.cli",
         "mardini_bench.data": "mardini_bench.data.__main__", "mardini_bench.params": "mardini_bench.params",
         "mardini_bench.cost": "mardini_bench.cost.cli", "mardini_bench.weights": "mardini_bench.weights",
         "mardini-bench": "mardini_bench.cli"}
SCRIPT = ["-c", "import sys; from mardini_bench.cli import main; sys.exit(main())"]  # what the script runs


@dataclass(frozen=True)
class Case:
    argv: Callable[[Path], List[str]]  # [command, args...], given the scratch folder (inputs go there)
    needle: str  # text the error line must contain
    once: Optional[str] = None  # text the line must hold exactly once (a file named twice is noise)
    deny: Optional[str] = None  # a path under the scratch folder this user may not read (in-process only)
    env: Optional[Dict[str, str]] = None  # environment variables set for the command ({tmp}: the scratch folder)


def runner(*overrides: str) -> Callable[[Path], List[str]]:
    return lambda tmp: ["mardini_bench.runner", str(tmp / "run"), "model=tiny", *overrides]


def sweep(*args: str) -> Callable[[Path], List[str]]:
    return lambda tmp: ["mardini_bench.sweep", str(_grid(tmp)), "--results", str(tmp / "results"), *args]


def _grid(tmp: Path, text: str = GRID, name: str = "bad.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def grid_file(text: str) -> Callable[[Path], List[str]]:
    """A sweep of the grid file `text` (bad.toml), as a dry run: nothing may run even if it parses."""
    return lambda tmp: ["mardini_bench.sweep", str(_grid(tmp, text)), "--results", str(tmp / "results"), "--dry-run"]


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


def videos(tmp: Path, name: str = "v") -> Path:
    """A folder holding bad.mp4: random bytes with a video's name."""
    (tmp / name).mkdir(exist_ok=True)
    (tmp / name / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    return tmp / name


def metrics(real: Callable[[Path], str], fake: Callable[[Path], str], *flags: str,
            metric: str = "psnr") -> Callable[[Path], List[str]]:
    return lambda tmp: ["mardini_bench.metrics", metric, real(tmp), fake(tmp), *flags]


def array(name: str, write: Callable[[Path], None]) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        write(tmp / name)
        return str(tmp / name)
    return make


def npy(value: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, value, allow_pickle=True)


def _npy_bytes(value: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays)


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


CLIPS = np.zeros((2, 4, 8, 8, 3), np.uint8)
good_npy = array("good.npy", npy(CLIPS))


def davis(tmp: Path, frames: Dict[str, int]) -> Path:
    from PIL import Image

    for seq, n in frames.items():
        (tmp / "D" / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (i * 20, 0, 0)).save(tmp / "D" / "JPEGImages" / "480p" / seq / f"{i:05d}.jpg")
    return tmp / "D"


def davis_build(frames: Dict[str, int], damage: Optional[str] = None) -> Callable[[Path], List[str]]:
    def argv(tmp: Path) -> List[str]:
        root = davis(tmp, frames)
        if damage:
            (root / "JPEGImages" / "480p" / damage).write_bytes(b"not a jpeg")
        return ["mardini_bench.data", "build-davis7", str(root), str(tmp / "out" / "new" / "davis7")]
    return argv


def no_runs(command: str) -> Callable[[Path], List[str]]:
    """`command` on a folder that exists but holds no run folders."""
    def argv(tmp: Path) -> List[str]:
        (tmp / "s").mkdir()
        return ["mardini_bench.report", str(tmp / "s")] if command == "report" else \
            ["mardini_bench.sweep", command, str(tmp / "s")]
    return argv


CASES: Dict[str, Case] = {
    # values the types allow but no run can use (runner CLI: before the run folder exists)
    "negative steps": Case(runner("train.steps=-5"), "train.steps: got -5, must be >= 1"),
    "zero batch": Case(runner("train.batch_size=0"), "train.batch_size: got 0"),
    "zero eval videos": Case(runner("eval.num_videos=0"), "eval.num_videos: got 0"),
    "nan lr": Case(runner("train.lr=nan"), "train.lr: got nan"),
    "negative grad clip": Case(runner("train.grad_clip=-1"), "train.grad_clip: got -1.0"),
    "zero heads": Case(runner("model.planner.heads=0"), "model.planner.heads: got 0"),
    "heads not dividing dim": Case(runner("model.planner.heads=7"), "model.planner.heads: 7 does not split"),
    "negative depth": Case(runner("model.planner.depth=-3"), "model.planner.depth: got -3"),
    "resolution off the codec grid": Case(runner("data.resolution=30"), "data.resolution: 30 is not a multiple of 8"),
    "probability above 1": Case(runner("model.generator.cfg_drop_prob=2"), "model.generator.cfg_drop_prob: got 2.0"),
    "misspelt key": Case(runner("train.stpes=3"), "did you mean 'train.steps'"),
    "unknown component": Case(runner("model.planner.name=marr"), "unknown planner 'marr'"),
    "not key=value": Case(runner("train.steps"), "'train.steps' is not of the form key=value"),
    "negative skip count": Case(runner("train.skip_nonfinite=-1"), "train.skip_nonfinite: got -1"),
    "model shape in params": Case(lambda tmp: ["mardini_bench.params", "tiny", "model.generator.heads=5"],
                                  "model.generator.heads: 5 does not split model.generator.dim=48"),
    "wrong weight file": Case(lambda tmp: _bad_weights(tmp), "i3d_kinetics400_tfhub.pt has sha256"),
    # sweep options and grid values, refused before anything is written
    "negative array parallelism": Case(sweep("--array-parallelism", "-1"), "--array-parallelism: got -1"),
    "negative timeout": Case(sweep("--timeout-min", "-1"), "--timeout-min: got -1"),
    "zero memory": Case(sweep("--mem-gb", "0"), "--mem-gb: got 0.0, must be > 0"),
    "flag value of the wrong type": Case(sweep("--array-parallelism", "x"),
                                         "--array-parallelism: invalid int value: 'x'"),
    "unknown flag": Case(lambda tmp: ["mardini_bench.params", "--bogus"], "unrecognized arguments: --bogus"),
    "bad value on a dry run": Case(sweep("--dry-run", "train.batch_size=0"), "train.batch_size: got 0"),
    "missing grid": Case(lambda tmp: ["mardini_bench.sweep", str(tmp / "nope.toml")], "nope.toml' not found"),
    # damaged or missing sweep folders
    "sweep.json without points": Case(status_of('{"name": "bad"}'), "sweep.json: no valid 'points' list"),
    "truncated sweep.json": Case(status_of('{"name": "ba'), "sweep.json: damaged JSON"),
    "not a sweep folder": Case(lambda tmp: ["mardini_bench.sweep", "status", str(tmp)], "is not a sweep folder"),
    "collect a missing folder": Case(lambda tmp: ["mardini_bench.sweep", "collect", str(tmp / "gone")], "gone"),
}


CASES.update({
    # runs whose data cannot be read: one line, and no empty run folder left
    "runner: data.root missing": Case(runner("data.dataset=video_folder", "data.root=nowhere", "eval.metrics=[psnr]"),
                                      "nowhere: no such folder"),
    "runner: corrupt video in data.root": Case(
        lambda tmp: runner("data.dataset=video_folder", f"data.root={videos(tmp)}", "eval.metrics=[psnr]")(tmp),
        f"bad.mp4: {CORRUPT}", once="bad.mp4"),
    "runner: unknown metric": Case(runner("eval.metrics=[fvdd]"), "eval.metrics: unknown metric 'fvdd'"),
    "runner: unknown eval protocol": Case(runner("eval.protocol=last"), "eval.protocol: 'last' is not one of"),
    "runner: value of the wrong type": Case(runner("train.steps=many"), "train.steps"),
    # grid files: syntax, keys, types, empty
    "grid: TOML syntax error": Case(grid_file('name = "bad\nbase = ["model=tiny"]\n'), "bad.toml: malformed TOML"),
    "grid: unknown top-level key": Case(grid_file('grdi = 1\n' + GRID), "bad.toml: unknown key 'grdi'"),
    "grid: empty file": Case(grid_file(""), "bad.toml: empty grid"),
    "grid: empty axis": Case(grid_file(GRID.replace("[1, 2]", "[]")), "axis 'model.planner.depth': empty axis"),
    "grid: axis not a list": Case(grid_file(GRID.replace("[1, 2]", "3")), "an axis is a list of values"),
    "grid: base not strings": Case(grid_file('base = "model=tiny"\n'), "bad.toml base: expected a list of strings"),
    "grid: unknown axis key": Case(grid_file(GRID.replace("model.planner.depth", "model.planer.depth")),
                                   "bad.toml: unknown config key 'model.planer'; did you mean 'model.planner'"),
    "grid: axis value of the wrong type": Case(grid_file(GRID.replace("[1, 2]", '["one", "two"]')),
                                               "model.planner.depth"),
    "grid: zipped axes of unequal length": Case(
        grid_file(GRID + '[zip]\n"train.lr" = [0.1, 0.2]\n"train.steps" = [1]\n'), "zipped axes need equal lengths"),
    "grid: folder name with a slash": Case(grid_file(GRID.replace('"bad"', '"a/b"')),
                                           "name 'a/b' must be a folder name"),
    "grid: slurm option of the wrong type": Case(grid_file(GRID + '[slurm]\ntimeout_min = "1h"\n'), "timeout_min"),
    "grid: binary file": Case(lambda tmp: ["mardini_bench.sweep", str(array("bin.toml", raw(b"\xff\xfe\x00"))(tmp)),
                                           "--dry-run"], "bin.toml: cannot read grid file (not UTF-8 text"),
    "grid: empty command-line value": Case(sweep("--dry-run", "model.planner.depth=1,"), "empty value in '1,'"),
    "sweep: run function that does not load": Case(sweep("--run-fn", "nowhere_module:run"),
                                                   "--run-fn nowhere_module:run: cannot load it"),
    "sweep: unknown cluster": Case(sweep("--cluster", "moon"), "--cluster: invalid choice: 'moon'"),
    "status: sweep.json not an object": Case(status_of("[]"), "sweep.json: expected a JSON object"),
    "collect: folder without runs": Case(no_runs("collect"), "holds no run folders"),
    # report
    "report: missing folder": Case(lambda tmp: ["mardini_bench.report", str(tmp / "gone")], "gone' does not exist"),
    "report: folder without runs": Case(no_runs("report"), "holds no run folders"),
    "report: too few bootstrap replicates": Case(lambda tmp: ["mardini_bench.report", str(tmp), "--n-boot", "5"],
                                                 "--n-boot 5 is too small"),
    "report: paper tables missing": Case(lambda tmp: ["mardini_bench.report", str(tmp), "--paper-tables",
                                                      str(tmp / "paper.csv")], "paper.csv: no such file"),
    # metrics: files that are not videos or arrays
    "metrics: garbage .npy": Case(metrics(array("garbage.npy", raw(bytes(range(256)) * 4)), good_npy),
                                  "garbage.npy: cannot read it as an array (not NumPy's format)"),
    "metrics: pickled object array": Case(metrics(array("obj.npy", npy(np.array([{"a": 1}], dtype=object))), good_npy),
                                          "obj.npy: cannot read it as an array (it holds Python objects"),
    "metrics: a pickle named .npy": Case(metrics(array("pick.npy", raw(pickle.dumps({"a": 1}))), good_npy),
                                         "pick.npy: cannot read it as an array (a Python pickle"),
    "metrics: truncated .npy": Case(metrics(array("cut.npy", raw(_npy_bytes(CLIPS)[:200])), good_npy),
                                    f"cut.npy: cannot read it as an array (truncated); expected a .npy file "
                                    f"(numpy.save) {ARRAY_FORM}"),
    "metrics: empty .npy": Case(metrics(array("empty.npy", raw(b"")), good_npy), "empty.npy: cannot read it as an "
                                                                                 "array (empty file)"),
    "metrics: garbage .npz": Case(metrics(array("junk.npz", raw(b"PK\x03\x04" + bytes(100))), good_npy),
                                  "junk.npz: cannot read it as an array (damaged or truncated); expected a .npz"),
    "metrics: float array": Case(metrics(array("f.npy", npy(CLIPS.astype(np.float32))), good_npy),
                                 "f.npy: expected uint8 videos [N,T,H,W,3] or images [N,H,W,3], got float32"),
    "metrics: array without videos": Case(metrics(array("none.npy", npy(CLIPS[:0])), good_npy),
                                          "none.npy: holds no videos"),
    "metrics: npz of several arrays": Case(metrics(array("two.npz", npz(a=CLIPS, b=CLIPS)), good_npy),
                                           "two.npz: holds arrays a, b; choose one as FILE.npz:NAME"),
    "metrics: npz array not there": Case(metrics(lambda tmp: array("two.npz", npz(a=CLIPS, b=CLIPS))(tmp) + ":c",
                                                 good_npy), "two.npz:c: holds arrays a, b"),
    "metrics: missing .npy": Case(metrics(lambda tmp: str(tmp / "gone.npy"), good_npy), "gone.npy: file not found"),
    "metrics: neither folder nor array": Case(metrics(array("clips.txt", raw(b"x")), good_npy),
                                              "clips.txt: not a folder of videos nor a .npy/.npz file"),
    "metrics: corrupt video": Case(metrics(lambda tmp: str(videos(tmp)), lambda tmp: str(videos(tmp, name="w"))),
                                   f"bad.mp4: {CORRUPT}", once="bad.mp4"),
    "metrics: unreadable video": Case(metrics(lambda tmp: str(videos(tmp)), lambda tmp: str(videos(tmp, name="w"))),
                                      "v/bad.mp4: permission denied", deny="v/bad.mp4"),
    "metrics: unreadable array": Case(metrics(array("locked.npy", npy(CLIPS)), good_npy),
                                      "locked.npy: permission denied", deny="locked.npy"),
    "metrics: folder without videos": Case(metrics(lambda tmp: str(tmp), good_npy), "no video files"),
    "metrics: sets of different sizes": Case(metrics(array("three.npy", npy(np.zeros((3, 4, 8, 8, 3), np.uint8))),
                                                     good_npy, "--frames", "4"), "psnr pairs clips: "),
    "metrics: zero frames": Case(metrics(good_npy, good_npy, "--frames", "0"),
                                 "--frames and --batch-size must be >= 1"),
    "metrics: malformed --size": Case(metrics(good_npy, good_npy, "--size", "big"), "--size must look like 128x128"),
    "metrics: unknown metric": Case(metrics(good_npy, good_npy, metric="fdv"), "invalid choice: 'fdv'"),
    "metrics: more frames than the clips hold": Case(metrics(good_npy, good_npy, "--frames", "9"),
                                                     "good.npy: videos have 4 frames, fewer than --frames 9"),
    # data: video info and the VIDIM-Bench builders
    "data: info on a missing path": Case(lambda tmp: ["mardini_bench.data", "info", str(tmp / "gone")],
                                         "gone: no such file or folder"),
    "data: info on a corrupt video": Case(lambda tmp: ["mardini_bench.data", "info", str(videos(tmp) / "bad.mp4")],
                                          f"bad.mp4: {CORRUPT}", once="bad.mp4"),
    "data: info on an unreadable video": Case(lambda tmp: ["mardini_bench.data", "info", str(videos(tmp) / "bad.mp4")],
                                              "bad.mp4: permission denied", deny="v/bad.mp4"),
    "data: info on an empty folder": Case(lambda tmp: ["mardini_bench.data", "info", str(tmp)], "empty folder"),
    "data: DAVIS root missing": Case(lambda tmp: ["mardini_bench.data", "build-davis7", str(tmp / "gone"),
                                                  str(tmp / "out")], "gone/JPEGImages/480p: no such folder"),
    "data: DAVIS root without a 9-frame sequence": Case(davis_build({"a": 3, "b": 5}),
                                                        "D/JPEGImages/480p: no clips: none of its 2 sequence folders"),
    "data: DAVIS frame that is not an image": Case(davis_build({"a": 9}, damage="a/00004.jpg"),
                                                   "00004.jpg: corrupt or truncated image", once="00004.jpg"),
    "data: DAVIS output exists": Case(lambda tmp: ["mardini_bench.data", "build-davis7", str(tmp), str(tmp)],
                                      "already exists (pass --overwrite"),
    "data: UCF101 test list missing": Case(lambda tmp: ["mardini_bench.data", "build-ucf101-7", str(tmp),
                                                        str(tmp / "testlist01.txt"), str(tmp / "out")],
                                           "testlist01.txt: no such file"),
    "data: UCF101 root missing": Case(lambda tmp: ["mardini_bench.data", "build-ucf101-7", str(tmp / "gone"),
                                                   str(tmp / "t.txt"), str(tmp / "out")], "gone: no such folder"),
    "data: stats with a misspelt key": Case(lambda tmp: ["mardini_bench.data", "stats", "data.frmes=5"],
                                            "did you mean 'data.frames'"),
    "data: unknown subcommand": Case(lambda tmp: ["mardini_bench.data", "bulid-davis7"],
                                     "invalid choice: 'bulid-davis7'"),
    # params, cost, weights
    "params: unknown preset": Case(lambda tmp: ["mardini_bench.params", "mardini_xl"], "mardini_xl"),
    "params: neither preset nor --all": Case(lambda tmp: ["mardini_bench.params"], "give a preset name or --all"),
    "cost: resolution off the planner grid": Case(lambda tmp: ["mardini_bench.cost", "table3", "--resolutions", "300"],
                                                  "resolutions [300] are not multiples of 256"),
    "cost: paper tables missing": Case(lambda tmp: ["mardini_bench.cost", "table3", "--paper-tables",
                                                    str(tmp / "paper.csv")], "paper.csv: no such file"),
    "cost: paper tables not a CSV of numbers": Case(
        lambda tmp: ["mardini_bench.cost", "table3", "--paper-tables", array("paper.csv", raw(b"a,b\n1,2\n"))(tmp)],
        "paper.csv: not the paper's numbers; expected a CSV with columns"),
    "cost: unknown subcommand": Case(lambda tmp: ["mardini_bench.cost", "table4"], "invalid choice: 'table4'"),
    "weights: unknown name": Case(lambda tmp: ["mardini_bench.weights", "fetch", "i3d.pt", "--dest", str(tmp / "w")],
                                  "unknown weight file 'i3d.pt'; known: i3d_kinetics400_tfhub.pt"),
    "weights: verify a missing folder": Case(lambda tmp: ["mardini_bench.weights", "verify", str(tmp / "gone")],
                                             "gone does not exist"),
    "weights: no subcommand": Case(lambda tmp: ["mardini_bench.weights"], "the following arguments are required"),
    # the console script forwards to the same mains
    "script: unknown command": Case(lambda tmp: ["mardini-bench", "trian"], "unknown command 'trian'; valid: sweep"),
    "script: run with a bad value": Case(lambda tmp: ["mardini-bench", "run", str(tmp / "run"), "train.steps=0"],
                                         "train.steps: got 0"),
    "script: status of a missing folder": Case(lambda tmp: ["mardini-bench", "status", str(tmp / "gone")],
                                               "is not a sweep folder"),
})

BIG_AXIS = ", ".join(map(str, range(1, 1001)))
ZERO_PIXELS = np.zeros((2, 4, 0, 0, 3), np.uint8)
THREADS_ABC = {"MARDINI_BENCH_THREADS": "abc"}

CASES.update({
    # values that passed `validate` and `--dry-run`, then failed at run time: now refused at plan time
    "runner: negative seed": Case(runner("seed=-1"), "seed: got -1, must be a whole number in [0, 4294967295]"),
    "runner: task weights summing to 0": Case(runner("mask.task_weights=[0,0,0]"),
                                              "mask.task_weights: got [0.0, 0.0, 0.0], must be one weight >= 0"),
    "runner: fewer val clips than eval videos": Case(runner("data.num_eval=1", "eval.num_videos=2"),
                                                     "data.num_eval: got 1, must be >= eval.num_videos=2"),
    "runner: a frame rate with no sane motion": Case(runner("data.fps=1e-300"),
                                                     "data.fps: got 1e-300, must be in [1, 240] for synthetic clips"),
    "runner: more DDIM steps than training timesteps": Case(
        runner("model.diffusion.sample_steps=20", "model.diffusion.train_timesteps=9"),
        "model.diffusion.sample_steps: got 20, must be <= model.diffusion.train_timesteps=9"),
    "runner: thread count that is no number": Case(runner(), "$MARDINI_BENCH_THREADS='abc': must be a positive whole "
                                                             "number", env=THREADS_ABC),
    "sweep: thread count that is no number, on a dry run": Case(sweep("--dry-run"), "$MARDINI_BENCH_THREADS='abc'",
                                                                env=THREADS_ABC),
    "sweep: thread count that is no number launches nothing": Case(sweep(), "$MARDINI_BENCH_THREADS='abc'",
                                                                   env=THREADS_ABC),
    "sweep: negative seed on a dry run": Case(sweep("--dry-run", "seed=-1"), "bad.toml: seed: got -1"),
    # an empty or duplicated evaluation, or a grid whose header hides what runs
    "runner: no task to evaluate": Case(runner("eval.tasks=[]"), "eval.tasks: empty; a run scores at least one task"),
    "runner: a metric twice": Case(runner("eval.metrics=[psnr,psnr]"), "eval.metrics: psnr named more than once"),
    "sweep: a metric twice on a dry run": Case(sweep("--dry-run", "eval.metrics=[psnr,psnr]"),
                                               "eval.metrics: psnr named more than once"),
    "grid: an override before model=NAME": Case(grid_file('name = "bad"\nbase = ["model.planner.depth=3", '
                                                          '"model=tiny"]\n'),
                                                "model.planner.depth=3 is undone by the later model=tiny"),
    "grid: a key in base and in [grid]": Case(grid_file(GRID.replace('"train.steps=2"]',
                                                                     '"train.steps=2", "model.planner.depth=3"]')),
                                              "'model.planner.depth' is set both in base and in [grid]"),
    "metrics: frames of 0x0 pixels": Case(metrics(array("zero.npy", npy(ZERO_PIXELS)), array("z.npy", npy(ZERO_PIXELS)),
                                                  "--frames", "4"), "zero.npy: frames of 0x0 pixels hold nothing"),
    # the edges of the command lines
    "metrics: a CUDA device this machine lacks": Case(metrics(good_npy, good_npy, "--frames", "4", "--device",
                                                              "cuda:99"), "--device='cuda:99': this machine has"),
    "metrics: fvd on a CUDA device this machine lacks": Case(metrics(good_npy, good_npy, "--frames", "4", "--device",
                                                                     "cuda:99", metric="fvd"), "--device='cuda:99'"),
    "data: --overwrite over a file": Case(lambda tmp: ["mardini_bench.data", "build-davis7", str(davis(tmp, {"a": 9})),
                                                       str(array("mine.txt", raw(b"my notes"))(tmp)), "--overwrite"],
                                          "mine.txt: is a file; OUT must be a folder for the clips"),
    "sweep: SLURM where there is none": Case(sweep("--cluster", "slurm"), "cannot use cluster 'slurm'",
                                             env={"PATH": "{tmp}"}),
    "grid: a million points on a dry run": Case(grid_file(f'name = "bad"\nbase = ["model=tiny"]\n[grid]\n'
                                                          f'"train.steps" = [{BIG_AXIS}]\n"seed" = [{BIG_AXIS}]\n'),
                                                "bad.toml: 1000000 points (train.steps (1000) x seed (1000)) is more "
                                                "than one sweep plans (10000)"),
    "report: a billion bootstrap replicates": Case(lambda tmp: ["mardini_bench.report", str(tmp), "--n-boot",
                                                                "1000000000"],
                                                   "--n-boot 1000000000 is too large; valid: 10 to 10000"),
    "collect: a file": Case(lambda tmp: ["mardini_bench.sweep", "collect", array("f.csv", raw(b"a\n"))(tmp)],
                            "f.csv' is a file, not a sweep folder"),
    "cost: negative micro-batch": Case(lambda tmp: ["mardini_bench.cost", "memory", "tiny", "--micro-batch", "-2"],
                                       "--micro-batch: got -2, must be >= 1"),
    "cost: zero resolution": Case(lambda tmp: ["mardini_bench.cost", "table3", "--resolutions", "0"],
                                  "--resolutions: got 0, must be positive multiples of 256"),
})

# Further inputs of the same kinds.
CASES.update({
    "runner: eval seed below 0": Case(runner("eval.seed=-3"), "eval.seed: got -3"),
    "runner: seed past 32 bits": Case(runner("seed=4294967296"), "seed: got 4294967296"),
    "runner: a weight per task missing": Case(runner("mask.task_weights=[1,1]"), "one weight >= 0 per task of "
                                                                                 "eval.tasks (3: "),
    "runner: a task twice in the mix": Case(runner("mask.tasks=[expansion,expansion]"),
                                            "mask.tasks: expansion named more than once"),
    "runner: a baseline twice": Case(runner("eval.baselines=[copy_nearest,copy_nearest]"),
                                     "eval.baselines: copy_nearest named more than once"),
    "runner: no metric": Case(runner("eval.metrics=[]"), "eval.metrics: empty"),
    "runner: a frame rate that stills every clip": Case(runner("data.fps=1e6"), "data.fps: got 1e+06"),
    "runner: two frames for interpolation": Case(runner("data.frames=2"),
                                                 "data.frames: got 2, too few for task interpolation"),
    "runner: a fixed reference frame outside the clip": Case(
        runner("mask.name=fixed", "mask.ref_frames=[0,20]"), "mask.ref_frames: got [0, 20], must be indices in [-9,"),
    "runner: a micro-batch not dividing the batch": Case(runner("train.micro_batch=3"),
                                                         "train.micro_batch: got 3, must divide train.batch_size=8"),
    "runner: neither planner nor generator": Case(runner("model.planner.name=none", "model.generator.name=none"),
                                                  "leave no model to train"),
    "runner: MAR-only without the reconstruction head": Case(
        runner("model.generator.name=none", "model.planner.recon_head=false"), "set model.planner.recon_head=true"),
    "runner: per-task steps past the training timesteps": Case(
        runner("model.diffusion.train_timesteps=9", 'model.diffusion.task_sample_steps=[["expansion",12]]'),
        "model.diffusion.task_sample_steps (expansion): got 12, must be <= model.diffusion.train_timesteps=9"),
    "runner: a training key before the preset's recipe": Case(
        lambda tmp: ["mardini_bench.runner", str(tmp / "run"), "train.lr=0.1", "model=tiny"],
        "train.lr=0.1 is undone by the later model=tiny"),
    "runner: OMP_NUM_THREADS of 0": Case(runner(), "$OMP_NUM_THREADS='0': must be a positive whole number",
                                         env={"OMP_NUM_THREADS": "0", "MARDINI_BENCH_THREADS": ""}),
    "sweep: an unknown metric on a dry run": Case(sweep("--dry-run", "eval.metrics=[fvdd]"),
                                                  "eval.metrics: unknown metric 'fvdd'"),
    "sweep: a CUDA device this machine lacks": Case(sweep("--dry-run"), "MARDINI_BENCH_DEVICE='cuda:99': this machine",
                                                    env={"MARDINI_BENCH_DEVICE": "cuda:99"}),
    "sweep: negative loader workers": Case(sweep("--dry-run"), "$MARDINI_BENCH_WORKERS='-1': must be a whole number",
                                           env={"MARDINI_BENCH_WORKERS": "-1"}),
    "grid: a key twice in base": Case(grid_file(GRID.replace('"train.steps=2"]', '"train.steps=2", "train.steps=3"]')),
                                      "bad.toml base: 'train.steps' is set twice"),
    "grid: seeds and a seed in base": Case(grid_file(GRID.replace('"train.steps=2"]', '"train.steps=2", "seed=3"]')
                                                     .replace("[grid]", "seeds = [0, 1]\n[grid]")),
                                           "'seed' is set both in base and in seeds"),
    "metrics: frames of no height": Case(metrics(good_npy, good_npy, "--frames", "4", "--size", "0x8"),
                                         "--size 0x8: both sides must be >= 1 pixel"),
    "metrics: the meta device": Case(metrics(good_npy, good_npy, "--frames", "4", "--device", "meta"),
                                     "--device='meta': computes no values"),
    "metrics: a device that is no device": Case(metrics(good_npy, good_npy, "--frames", "4", "--device", "gpu"),
                                                "--device='gpu': not a device"),
    "data: OUT inside a file": Case(lambda tmp: ["mardini_bench.data", "build-davis7", str(davis(tmp, {"a": 9})),
                                                 str(array("mine.txt", raw(b"x"))(tmp)) + "/davis7"],
                                    "mine.txt/davis7: " ),
    "cost: no GPU": Case(lambda tmp: ["mardini_bench.cost", "memory", "tiny", "--gpus", "0"], "--gpus: got 0"),
    "cost: frames of one": Case(lambda tmp: ["mardini_bench.cost", "memory", "tiny", "--frames", "1"],
                                "--frames: got 1, must be >= 2"),
    "report: one bootstrap replicate too many": Case(lambda tmp: ["mardini_bench.report", str(tmp), "--n-boot",
                                                                  "10001"], "--n-boot 10001 is too large"),
    "data: stats with a thread count that is no number": Case(lambda tmp: ["mardini_bench.data", "stats", "model=tiny"],
                                                              "$MARDINI_BENCH_THREADS='abc'", env=THREADS_ABC),
    "metrics: a thread count that is no number": Case(metrics(good_npy, good_npy, "--frames", "4"),
                                                      "$MARDINI_BENCH_THREADS='abc'", env=THREADS_ABC),
    "collect: sweep.json cut short": Case(lambda tmp: [*status_of('{"name": "ba')(tmp)[:1], "collect", str(tmp / "s")],
                                          "sweep.json: damaged JSON"),
    "report: sweep.json cut short": Case(lambda tmp: ["mardini_bench.report", status_of('{"name": "ba')(tmp)[-1]],
                                         "sweep.json: damaged JSON"),
    "report: a file": Case(lambda tmp: ["mardini_bench.report", array("f.csv", raw(b"a\n"))(tmp)],
                           "f.csv' is a file, not a sweep folder"),
})

# Run as real processes, at least one per command line: the wiring (`python -m`, the console
# script's `main`, exit codes, what reaches fd 2 from C code) is the same in the others.
SUBPROCESS = {"negative steps", "missing grid", "report: missing folder", "metrics: corrupt video",
              "data: info on a corrupt video", "model shape in params", "cost: resolution off the planner grid",
              "weights: unknown name", "script: unknown command", "metrics: frames of 0x0 pixels",
              "runner: negative seed", "sweep: thread count that is no number launches nothing"}


def leftovers(tmp: Path) -> List[str]:
    """Files a failed command must not leave: temp files, and anything under run/, results/ or out/."""
    temp = [p for p in tmp.rglob("*") if p.name.endswith((".tmp", ".temp")) or p.name.startswith(".")]
    made = [p for p in (tmp / "run", tmp / "results", tmp / "out") if p.exists()]
    return [str(p.relative_to(tmp)) for p in temp + made]


def run_in_process(argv: List[str], capfd) -> tuple:
    """(exit code, stdout, stderr) of `main(argv)`; an exception other than SystemExit escapes (and
    fails the test): that would be a traceback."""
    main = importlib.import_module(MAINS[argv[0]]).main
    try:
        code = main(argv[1:])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capfd.readouterr()
    return code, out, err


def run_subprocess(argv: List[str], env: Optional[Dict[str, str]] = None) -> tuple:
    command = [sys.executable, *SCRIPT, *argv[1:]] if argv[0] == "mardini-bench" else [sys.executable, "-m", *argv]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout, done.stderr


def deny_reading(monkeypatch, path: Path) -> None:
    """This user may not read `path` (tests run as root here, whom file modes do not stop)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == path and mode & os.R_OK
                        else real(p, mode, *a, **k))


def test_the_catalogue_covers_every_command_and_runs_each_as_a_process_once(tmp_path):
    assert len(CASES) >= 150
    commands = set()
    for i, case in enumerate(sorted(SUBPROCESS)):
        (tmp_path / str(i)).mkdir()
        commands.add(CASES[case].argv(tmp_path / str(i))[0])
    assert commands == set(MAINS)
    assert not any(CASES[case].deny for case in SUBPROCESS)  # denial is simulated in this process


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line_and_leaves_nothing(case, tmp_path, capfd, monkeypatch):
    spec = CASES[case]
    argv = spec.argv(tmp_path)
    capfd.readouterr()  # what building the inputs printed
    if spec.deny:
        deny_reading(monkeypatch, tmp_path / spec.deny)
    env = {key: value.format(tmp=tmp_path) for key, value in (spec.env or {}).items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, out, err = run_subprocess(argv, env) if case in SUBPROCESS else run_in_process(argv, capfd)
    lines = err.strip().splitlines()
    assert code not in (0, None), out
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert spec.needle in lines[0], lines[0]
    if spec.once:
        assert lines[0].count(spec.once) == 1, lines[0]
    assert "Traceback" not in err + out and "allow_pickle" not in err
    assert leftovers(tmp_path) == []


# -- signals: one stop path for SIGINT, SIGTERM and SIGHUP ---------------------------------------------

LONG_GRID = 'name = "long"\nbase = ["model=tiny", "train.steps=100000", "eval.metrics=[psnr]"]\n'
STOPS = {  # how a local sweep is stopped -> (signal, to its whole process group, runs, started as `nohup ... &`)
    "kill -INT": (signal.SIGINT, False, 1, False),
    "Ctrl-C (to the process group)": (signal.SIGINT, True, 1, False),
    "SIGTERM, two runs, started with SIGINT ignored": (signal.SIGTERM, False, 2, True),
    "SIGHUP": (signal.SIGHUP, False, 1, False),
}


def start_sweep(grid: Path, results: Path, nohup: bool = False) -> subprocess.Popen:
    """A local sweep of `grid`, in its own process group (a terminal's Ctrl-C reaches all of it)."""
    ignore_int = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if nohup else None  # as `nohup ... &` does
    return subprocess.Popen([sys.executable, "-m", "mardini_bench.sweep", str(grid), "--results", str(results),
                             "--cluster", "local", "--no-report"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=ignore_int)


def wait_started(sweep: subprocess.Popen, sweep_dir: Path, runs: int) -> List[int]:
    """The pids of the sweep's `runs` runs, once each has started."""
    started: List[Path] = []
    deadline = time.time() + 180
    while len(started) < runs and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.5)
        started = list(sweep_dir.glob("*/started.json"))
    assert len(started) == runs, sweep.stderr.read() if sweep.poll() is not None else "runs did not start"
    return [json.loads(path.read_text())["pid"] for path in started]


@pytest.mark.parametrize("how", sorted(STOPS))
def test_a_signal_stops_a_local_sweep_and_its_runs_in_one_line(how, tmp_path):
    """However a local sweep is stopped, its runs stop with it within 30 s (no orphans training on), one
    line says so, the exit code is 128 + the signal, no traceback reaches the terminal, and each run folder
    reads LOST (launching again resumes it)."""
    from mardini_bench.sweep import rundir

    sig, group, runs, nohup = STOPS[how]
    grid = tmp_path / "long.toml"
    grid.write_text(LONG_GRID + ("seeds = [0, 1]\n" if runs == 2 else ""))
    sweep = start_sweep(grid, tmp_path / "results", nohup)
    pids = wait_started(sweep, tmp_path / "results" / "long", runs)
    time.sleep(1)  # into training
    (os.killpg if group else os.kill)(sweep.pid, sig)
    sent = time.time()
    out, err = sweep.communicate(timeout=90)
    while any(map(pid_alive, pids)) and time.time() - sent < 30:
        time.sleep(0.1)
    assert not any(map(pid_alive, pids)), f"runs still alive {time.time() - sent:.0f} s after {how}"
    assert sweep.returncode == 128 + sig, err
    assert err.splitlines() == [f"{signal.Signals(sig).name}: stopped {runs} local run(s); launching again resumes "
                                f"them"], err
    assert "Traceback" not in out
    folders = [d for d in (tmp_path / "results" / "long").iterdir() if (d / "config.json").exists()]
    assert [rundir.run_state(d)[0] for d in folders] == ["LOST"] * runs


RESUME_GRID = """
name = "resume"
base = ["model=tiny", "model.diffusion.sample_steps=2", "data.frames=5", "data.resolution=16", "data.num_train=16",
        "data.num_eval=4", "train.batch_size=2", "train.warmup_steps=2", "train.steps=200", "train.checkpoint_every=10",
        "train.log_every=10", "eval.tasks=[interpolation]", "eval.metrics=[psnr,ssim]",
        "eval.baselines=[copy_nearest]", "eval.num_videos=2", "seed=0"]
"""


def test_a_sweep_stopped_by_ctrl_c_then_launched_again_scores_exactly_as_a_clean_one(tmp_path):
    """The stop path changes nothing in what a run computes: stopped part-way by Ctrl-C to the process
    group, then launched again, it resumes from its checkpoint and gives the clean sweep's scores bit for bit."""
    from mardini_bench.sweep import rundir

    grid = tmp_path / "resume.toml"
    grid.write_text(RESUME_GRID)
    command = [sys.executable, "-m", "mardini_bench.sweep", str(grid), "--cluster", "local", "--no-report", "--results"]
    clean = subprocess.run([*command, str(tmp_path / "clean")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr
    sweep = start_sweep(grid, tmp_path / "stopped")
    sweep_dir = tmp_path / "stopped" / "resume"
    wait_started(sweep, sweep_dir, 1)
    deadline = time.time() + 300
    while not list(sweep_dir.glob("*/last.pt")) and time.time() < deadline:  # part-way: a checkpoint, no result
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGINT)
    assert sweep.wait(timeout=60) == 128 + signal.SIGINT
    (run_dir,) = [d for d in sweep_dir.iterdir() if (d / "config.json").exists()]
    assert rundir.run_state(run_dir)[0] == "LOST" and not (run_dir / "result.json").exists()
    again = subprocess.run([*command, str(tmp_path / "stopped")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    resumed = [e["step"] for e in rundir.read_jsonl(run_dir / "log.jsonl") if e.get("event") == "resume"]
    assert resumed and resumed[0] > 0  # it resumed from its checkpoint, not from step 0
    scores = lambda folder: [(r["task"], r["method"], r["metric"], r["value"], r.get("per_video"))  # noqa: E731
                             for r in rundir.read_result(folder)["records"]]
    assert scores(run_dir) == scores(tmp_path / "clean" / "resume" / run_dir.name)


# -- status from validated files ---------------------------------------------------------------------

def finished_run(tmp_path: Path) -> Path:
    """A run folder as a finished sweep run leaves it: config.json, started.json and result.json."""
    from mardini_bench.config import RunConfig, apply_overrides, to_dict
    from mardini_bench.sweep import rundir

    run_dir = tmp_path / "run"
    rundir.write_json(run_dir / rundir.CONFIG, to_dict(apply_overrides(RunConfig(), ["model=tiny"])))
    rundir.write_json(run_dir / rundir.STARTED, {"host": rundir.this_host(), "pid": os.getpid()})
    rundir.write_json(run_dir / "result.json", {"run_id": "run", "status": "DONE", "records": [
        {"task": "interpolation", "method": "model", "metric": "psnr", "value": 20.5},
        {"task": "interpolation", "method": "model", "metric": "ssim", "value": None}]})
    return run_dir


def _records(*records: str) -> str:
    return '{"status": "DONE", "records": [' + ", ".join(records) + "]}"


PSNR = '"task": "interpolation", "method": "model", "metric": "psnr"'
DAMAGED_FILES = {  # a file of a finished run -> (its text, what the DAMAGED detail says)
    "a value that is text": ("result.json", _records("{" + PSNR + ', "value": "abc"}'),
                             "records[0]: 'value' must be a number or null, got 'abc'"),
    "a value that is true": ("result.json", _records("{" + PSNR + ', "value": true}'), "got True"),
    "a record without its value": ("result.json", _records("{" + PSNR + "}"), "got nothing (no 'value')"),
    "a record without its metric": ("result.json", _records('{"task": "interpolation", "method": "model", "value": 1}'),
                                    "records[0]: must be an object with task, method and metric"),
    "a record that is a number": ("result.json", _records("3"), "records[0]: must be an object"),
    "another run's result": ("result.json", '{"run_id": "abc123", "status": "DONE", "records": []}',
                             "holds the result of run 'abc123', not of 'run'"),
    "a metric scored twice": ("result.json", _records("{" + PSNR + ', "value": 1}', "{" + PSNR + ', "value": 2}'),
                              "records[1] scores interpolation/model/psnr a second time"),
    "a truncated config": ("config.json", '{"model": {"planner', "damaged JSON"),
    "a config with a value of the wrong type": ("config.json", '{"train": {"steps": "many"}}',
                                                "train.steps: expected int"),
    "a config with a key no config has": ("config.json", '{"train": {"stpes": 3}}', "unknown config key 'train.stpes'"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_FILES))
def test_a_finished_run_with_a_file_that_does_not_validate_is_damaged_never_done(case, tmp_path):
    """DONE needs a result whose every record is one scored value and a config that is a run config; anything
    else is DAMAGED, naming the file and the fault, and the next launch redoes the run instead of skipping it."""
    from mardini_bench.sweep import rundir

    name, text, fault = DAMAGED_FILES[case]
    run_dir = finished_run(tmp_path)
    assert rundir.run_state(run_dir) == ("DONE", "")
    (run_dir / name).write_text(text)
    state, detail = rundir.run_state(run_dir)
    assert state == "DAMAGED" and detail.startswith(str(run_dir / name)) and fault in detail, detail
    assert rundir.read_result(run_dir) is None  # what the launcher's skip and the job's own check read


def test_running_is_decided_by_the_run_lock_not_by_a_pid(tmp_path):
    """A started.json whose pid now belongs to another live process (pid 1), or that was cut short, is a
    LOST run unless a job holds the folder's run lock; only a held lock is RUNNING."""
    from mardini_bench.sweep import rundir

    run_dir = tmp_path / "run"
    rundir.write_json(run_dir / rundir.CONFIG, {"seed": 0})
    rundir.write_json(run_dir / rundir.SUBMITTED, {"cluster": "local", "job_id": "1"})
    assert rundir.run_state(run_dir) == ("PENDING", "")
    rundir.write_json(run_dir / rundir.STARTED, {"host": rundir.this_host(), "pid": 1})  # alive, and not the job
    state, detail = rundir.run_state(run_dir)
    assert state == "LOST" and "its job (process 1) ended without a result" in detail
    (run_dir / rundir.STARTED).write_text('{"host": "')  # cut short as the job wrote it
    state, detail = rundir.run_state(run_dir)
    assert state == "LOST" and "started.json: damaged JSON" in detail
    lock = rundir.RunLock(run_dir)
    assert lock.acquire()
    try:
        assert rundir.run_state(run_dir) == ("RUNNING", "")
    finally:
        lock.release()
    assert rundir.run_state(run_dir)[0] == "LOST"


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


# -- a full disk ------------------------------------------------------------------------------------

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_fails_a_run_in_one_line_naming_its_folder(tmp_path, monkeypatch, capfd, one_thread):
    """The checkpoint write finds the disk full: one line naming the run folder, no temp file, no
    checkpoint or result that looks whole."""
    import torch

    from mardini_bench.runner import main

    def full(payload, f):
        f.write(b"PK\x03\x04 part of a checkpoint")
        _no_space()

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main([str(run), "model=tiny", "train.steps=1", "data.frames=5", "data.resolution=16", "data.num_train=2",
              "train.batch_size=2", "eval.metrics=[psnr]"])
    lines = capfd.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {run}: no space left on the device") and "writing last.pt" in lines[0]
    assert sorted(p.name for p in run.iterdir()) == ["log.jsonl"]  # whole log lines; no .tmp, last.pt, result


def test_a_run_that_cannot_even_record_its_failure_reads_failed_and_collects(tmp_path, monkeypatch, capsys):
    """Disk full during a sweep run, and failed.json cannot be written either: status must not call the
    run RUNNING, and collect must neither crash nor leave a temp file, full disk or not."""
    import pandas as pd

    from mardini_bench.sweep import plan, rundir
    from mardini_bench.sweep.__main__ import main
    from mardini_bench.sweep.grid import load_grid
    from mardini_bench.sweep.job import RunJob

    grid = load_grid(_grid(tmp_path))
    points, _ = plan.resolve(grid)
    sweep_dir = tmp_path / "results" / grid.name
    plan.write_manifest(sweep_dir, grid, points, "local")
    for p in points:
        plan.prepare(sweep_dir / p.run_id, grid, p, {"sha": None})
    run_dir = sweep_dir / points[0].run_id
    disk = {"full": False}
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: _no_space() if disk["full"] else fsync(fd))

    def run_fn(cfg, folder):
        disk["full"] = True
        rundir.write_json(folder / "last.json", {"step": 1})

    with pytest.raises(OSError, match=f"{run_dir}: no space left on the device"):
        RunJob(run_dir, run_fn)()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    state, detail = rundir.run_state(run_dir)
    assert state == "FAILED" and "could not be written to failed.json" in detail
    assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{points[0].run_id} FAILED" in out and "RUNNING" not in out
    monkeypatch.setattr(pd.DataFrame, "to_csv", _no_space)  # collect's own write finds the disk full
    with pytest.raises(SystemExit) as exit_:
        main(["collect", str(sweep_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {sweep_dir}: no space left")
    assert not [p for p in sweep_dir.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()  # space again
    assert main(["collect", str(sweep_dir)]) == 0
    notes = capsys.readouterr().err.strip().splitlines()  # one line each, not Python's warning and source line
    assert f"warning: run {points[0].run_id} is FAILED" in notes[0] and all(n.startswith("warning: ") for n in notes)
    table = pd.read_csv(sweep_dir / "results.csv")
    assert set(table[table["run_id"] == points[0].run_id]["status"]) == {"FAILED"}


# -- collect and report: damaged or foreign runs, and nothing half-written ---------------------------

def launched(tmp_path: Path, steps: int) -> tuple:
    """The bad.toml sweep launched with train.steps=`steps`, as a finished sweep leaves it (one PSNR
    record per run): (sweep folder, its run ids)."""
    from mardini_bench.sweep import plan, rundir
    from mardini_bench.sweep.grid import load_grid

    grid = load_grid(_grid(tmp_path, GRID.replace("train.steps=2", f"train.steps={steps}")))
    points, _ = plan.resolve(grid)
    sweep_dir = tmp_path / "results" / grid.name
    plan.write_manifest(sweep_dir, grid, points, "local")
    for p in points:
        plan.prepare(sweep_dir / p.run_id, grid, p, {"sha": None})
        rundir.write_json(sweep_dir / p.run_id / "result.json", {"run_id": p.run_id, "status": "DONE", "records": [
            {"task": "interpolation", "method": "model", "metric": "psnr", "value": float(steps + p.idx)}]})
    return sweep_dir, [p.run_id for p in points]


def test_collect_takes_the_runs_of_the_latest_launch_and_says_what_it_left_out(tmp_path, capsys):
    """A launch with another train.steps into the same sweep folder: its runs are another experiment, and
    collect leaves the earlier ones out (saying how many) instead of mixing them in."""
    import pandas as pd

    from mardini_bench.sweep.__main__ import main

    _, earlier = launched(tmp_path, 2)
    sweep_dir, latest = launched(tmp_path, 3)
    assert main(["collect", str(sweep_dir)]) == 0
    assert set(pd.read_csv(sweep_dir / "results.csv")["run_id"]) == set(latest)
    notes = capsys.readouterr().err.strip().splitlines()
    assert notes[0].startswith("warning: 2 run folder(s) not in the latest launch of this sweep")
    assert all(note.startswith("warning: ") for note in notes)


def test_a_damaged_result_is_damaged_in_status_collect_and_report_which_all_finish(tmp_path, capsys):
    """A record whose value is "abc": DAMAGED everywhere, its values NaN; collect and report finish."""
    import pandas as pd

    from fake_runs import make_sweep
    from mardini_bench.analysis import sweep_report

    sweep_dir = make_sweep(tmp_path / "depth", [({"model.planner.depth": 2}, 0.4), ({"model.planner.depth": 4}, 0.8)],
                           seeds=(0, 1))
    damaged = sweep_dir / "rdepth4_s1" / "result.json"
    result = json.loads(damaged.read_text())
    result["records"][0]["value"] = "abc"
    damaged.write_text(json.dumps(result))
    assert sweep_report.main([str(sweep_dir), "--n-boot", "20"]) == 0
    table = pd.read_csv(sweep_dir / "results.csv")
    rows = table[table["run_id"] == "rdepth4_s1"]
    assert set(rows["status"]) == {"DAMAGED"} and rows["value"].isna().all()
    assert "'value' must be a number or null, got 'abc'" in rows["error"].iloc[0]
    assert "rdepth4_s1: DAMAGED" in (sweep_dir / "report.md").read_text()


def _files(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_report_that_fails_half_way_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """Every output of a report is written in one all-or-nothing block: a failure after the tables and
    plots are written (here: the HTML) restores the earlier report byte for byte, or leaves none."""
    from fake_runs import make_sweep
    from mardini_bench.analysis import sweep_report

    sweep_dir = make_sweep(tmp_path / "depth", [({"model.planner.depth": 2}, 0.4), ({"model.planner.depth": 4}, 0.8)],
                           seeds=(0, 1))
    bare = _files(sweep_dir)

    def fail(*args, **kwargs):
        raise RuntimeError("half-way")

    monkeypatch.setattr(sweep_report, "_html", fail)
    with pytest.raises(RuntimeError, match="half-way"):
        sweep_report.build_report(sweep_dir, n_boot=20)
    assert _files(sweep_dir) == bare and not (sweep_dir / "plots").exists()  # no report: none is left
    monkeypatch.undo()
    sweep_report.build_report(sweep_dir, n_boot=20)
    changed = sweep_dir / "rdepth2_s0" / "result.json"
    result = json.loads(changed.read_text())
    result["records"][0]["value"] += 1.0
    changed.write_text(json.dumps(result))  # a value the next report would show differently
    first = _files(sweep_dir)
    monkeypatch.setattr(sweep_report, "_html", fail)
    with pytest.raises(RuntimeError, match="half-way"):
        sweep_report.build_report(sweep_dir, n_boot=20)
    assert _files(sweep_dir) == first  # the earlier report, results.csv and plots as they were


def test_a_log_line_that_is_not_utf8_costs_that_line_and_not_the_report(tmp_path):
    from fake_runs import make_sweep
    from mardini_bench.analysis import sweep_report
    from mardini_bench.io import read_jsonl

    sweep_dir = make_sweep(tmp_path / "depth", [({"model.planner.depth": 2}, 0.4), ({"model.planner.depth": 4}, 0.8)],
                           seeds=(0, 1))
    log = sweep_dir / "rdepth2_s0" / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3]) + b'{"step": 25, "loss": "\xff\xfe"}\n' + b"".join(lines[3:]))
    assert [e["step"] for e in read_jsonl(log)] == [0, 10, 20, 30, 40, 50, 60]
    assert sweep_report.main([str(sweep_dir), "--n-boot", "20"]) == 0
    assert (sweep_dir / "plots" / "training_curves.png").exists()


def test_build_davis7_over_a_file_keeps_the_file_and_leaves_no_hidden_copy(tmp_path, capfd):
    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"my notes")
    argv = ["mardini_bench.data", "build-davis7", str(davis(tmp_path, {"a": 9})), str(mine), "--overwrite"]
    code, _, err = run_in_process(argv, capfd)
    assert code == 2 and err.startswith(f"error: {mine}: is a file")
    assert mine.read_bytes() == b"my notes" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_valid_arrays_score_with_nothing_on_stderr(tmp_path, capfd):
    """No warning noise: a valid .npy pair prints its score and nothing else (the arrays are read-only
    memory maps, copied clip by clip)."""
    argv = ["mardini_bench.metrics", "psnr", good_npy(tmp_path), array("b.npy", npy(CLIPS + 1))(tmp_path),
            "--frames", "4"]
    code, out, err = run_in_process(argv, capfd)
    assert code == 0 and out.startswith("psnr: ") and err == ""
