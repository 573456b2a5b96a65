"""Sweep machinery: grids, validation before submission, run folders, failure records, and real
local-executor sweeps (subprocesses), including kill -9 part-way and a re-run of real tiny runs.

`toy_run` is a real but trivial training function with the runner's contract: it resumes from an
atomically written `last.pt`, logs to `log.jsonl` and writes `result.json` at the very end. Jobs
import it from this file (PYTHONPATH=tests), exactly as they import `mardini_bench.run.one_run.run`. The
kill -9 test uses the default runner itself (train, checkpoint, evaluate) on tiny configs.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mardini_bench.config import RunConfig, apply_overrides, config_hash, from_dict, to_dict
from mardini_bench.sweep import launch, rundir
from mardini_bench.sweep.__main__ import main
from mardini_bench.sweep.grid import GridError, expand, from_mapping, load_grid, split_values, with_cli_args
from mardini_bench.sweep.job import RunJob, load_run_fn
from mardini_bench.sweep.plan import resolve

REPO = Path(__file__).resolve().parents[1]
TOY = "test_sweep:toy_run"
STEP_S = 0.05  # toy training step: slow enough to kill part-way, fast enough for the time budget


def toy_run(cfg: RunConfig, run_dir: Path) -> dict:
    """A deterministic 'training' that checkpoints, resumes and fails like the runner does."""
    run_dir = Path(run_dir)
    if cfg.data.root is not None and not Path(cfg.data.root).exists():
        raise FileNotFoundError(f"data.root {cfg.data.root!r} does not exist")
    state = rundir.read_json(run_dir / "last.pt") or {"step": 0, "acc": cfg.seed}
    with open(run_dir / "log.jsonl", "a") as log:
        log.write(json.dumps({"event": "resume" if state["step"] else "start", "step": state["step"]}) + "\n")
    for step in range(state["step"], cfg.train.steps):
        time.sleep(STEP_S)
        state = {"step": step + 1, "acc": (state["acc"] * 31 + step + cfg.model.planner.depth) % 1_000_003}
        if state["step"] % cfg.train.checkpoint_every == 0:
            rundir.write_json(run_dir / "last.pt", state)
    result = {"run_id": run_dir.name, "status": "DONE", "records": [
        {"task": "interpolation", "method": "model", "metric": "psnr", "value": state["acc"] / 1e5,
         "protocol": {"implementation": "toy"}}]}
    rundir.write_json(run_dir / "result.json", result)
    return result


def write_grid(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


TOY_GRID = """
name = "toy"
base = ["model=tiny", "train.steps=12", "train.checkpoint_every=3"]
seeds = [0, 1]
[grid]
"model.planner.depth" = [1, 2]
[slurm]
timeout_min = 30
"""


def sweep_cmd(grid: Path, results: Path, *extra: str, report: bool = False) -> list:
    return [sys.executable, "-m", "mardini_bench.sweep", str(grid), "--results", str(results),
            "--cluster", "local", "--run-fn", TOY, *extra] + ([] if report else ["--no-report"])


def job_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "tests"), env.get("PYTHONPATH")) if p)
    env.pop("OMP_NUM_THREADS", None)
    return env


def results_in(sweep_dir: Path) -> dict:
    return {d.name: rundir.read_result(d) for d in sweep_dir.iterdir() if (d / "config.json").exists()}


# ----------------------------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------------------------
def test_expand_orders_grid_then_zip_then_seed():
    grid = from_mapping({"base": ["model=tiny"], "seeds": [0, 1], "grid": {"model.planner.depth": [1, 2]},
                         "zip": {"model.generator.dim": [32, 48], "model.generator.heads": [2, 4]}}, "g", "g")
    points = expand(grid)
    assert len(points) == 2 * 2 * 2
    assert points[0] == ("model.planner.depth=1", "model.generator.dim=32", "model.generator.heads=2", "seed=0")
    assert points[1][-1] == "seed=1"
    assert points[2][1:3] == ("model.generator.dim=48", "model.generator.heads=4")  # zipped, not crossed
    assert points[-1][0] == "model.planner.depth=2"


def test_toml_values_become_override_strings():
    grid = from_mapping({"grid": {"mask.ref_frames": [[0, -1], [0, 4]], "model.planner.qk_norm": [True, False]}},
                        "g", "g")
    assert grid.product["mask.ref_frames"] == ("[0, -1]", "[0, 4]")
    assert grid.product["model.planner.qk_norm"] == ("true", "false")


@pytest.mark.parametrize("text,values", [("1,2", ["1", "2"]), ("[0,-1],[0,4]", ["[0,-1]", "[0,4]"]),
                                         ("[a,b]", ["[a,b]"]), ("x", ["x"]), ("(1,2),3", ["(1,2)", "3"])])
def test_split_values_ignores_commas_in_brackets(text, values):
    assert split_values(text) == values


def test_cli_axes_add_replace_and_fix():
    grid = from_mapping({"seeds": [0, 1], "grid": {"model.planner.depth": [1, 2]}}, "g", "g")
    grid = with_cli_args(grid, ["model.planner.depth=1,2,3", "model.generator.dim=32,48", "train.steps=5"])
    assert grid.product["model.planner.depth"] == ("1", "2", "3")
    assert list(grid.product)[-1] == "seed"  # seeds stay the fastest axis
    assert grid.base[-1] == "train.steps=5" and len(expand(grid)) == 3 * 2 * 2
    fixed = with_cli_args(grid, ["model.planner.depth=4", "seed=7"])
    assert "model.planner.depth" not in fixed.product and "seed" not in fixed.product
    assert fixed.base[-2:] == ("model.planner.depth=4", "seed=7") and len(expand(fixed)) == 2


def test_the_command_line_replaces_what_the_base_sets_so_the_header_shows_what_runs():
    grid = from_mapping({"base": ["model=tiny", "train.steps=300", "model.planner.depth=3"]}, "g", "g")
    axis = with_cli_args(grid, ["train.steps=5,6"])
    assert axis.base == ("model=tiny", "model.planner.depth=3") and axis.product == {"train.steps": ("5", "6")}
    fixed = with_cli_args(grid, ["model=small", "train.steps=5"])  # in place: the base's later keys refine it
    assert fixed.base == ("model=small", "train.steps=5", "model.planner.depth=3")
    cfg = resolve(fixed)[0][0].config
    assert (cfg.model.generator, cfg.model.planner.depth, cfg.train.steps) == \
        (apply_overrides(RunConfig(), ["model=small"]).model.generator, 3, 5)


def test_a_preset_axis_comes_first_so_the_base_refines_every_preset():
    grid = from_mapping({"base": ["train.steps=7", "model.planner.depth=1"], "grid": {"model": ["tiny", "small"]}},
                        "g", "g")
    points, _ = resolve(grid)
    assert [(p.config.train.steps, p.config.model.planner.depth) for p in points] == [(7, 1), (7, 1)]
    assert points[1].config.train.lr == apply_overrides(RunConfig(), ["model=small"]).train.lr  # the recipe's


def test_a_grid_too_large_to_plan_is_refused_from_its_axis_lengths(monkeypatch):
    from mardini_bench.sweep import plan

    grid = from_mapping({"base": ["model=tiny"], "grid": {"train.lr": [i / 1e6 for i in range(1, 1001)],
                                                          "seed": list(range(1000))}}, "big.toml", "big")
    monkeypatch.setattr(plan, "expand", lambda grid: pytest.fail("points were built"))
    with pytest.raises(GridError, match=r"^big.toml: 1000000 points \(train.lr \(1000\) x seed \(1000\)\) is more "
                                        r"than one sweep plans \(10000\)"):
        resolve(grid)


def test_run_id_is_config_hash_and_duplicates_share_a_folder():
    grid = from_mapping({"base": ["model=tiny"], "grid": {"model.planner.depth": [2, 1, 2]}}, "g", "g")
    points, duplicates = resolve(grid)
    assert [p.idx for p in points] == [0, 1] and duplicates == [(2, 0)]
    want = apply_overrides(RunConfig(), ["model=tiny", "model.planner.depth=2"])
    assert to_dict(points[0].config) == to_dict(want)
    # The id is the hash of the config the job reads back from config.json.
    assert points[0].run_id == config_hash(from_dict(RunConfig, to_dict(points[0].config)))


def test_quickstart_grid_is_four_valid_runs():
    points, duplicates = resolve(load_grid(REPO / "ablations" / "quickstart.toml"))
    assert len(points) == 4 and not duplicates


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing submitted
# ----------------------------------------------------------------------------------------------
BAD_GRIDS = {
    "unknown key": ('name="b"\n[grid]\n"model.planner.dept" = [1, 2]\n', "model.planner.dept"),
    "wrong type": ('name="b"\n[grid]\n"model.planner.depth" = ["deep", 2]\n', "model.planner.depth"),
    "unknown component": ('name="b"\n[grid]\n"model.planner.name" = ["marr"]\n', "unknown planner 'marr'"),
    "empty axis": ('name="b"\n[grid]\n"model.planner.depth" = []\n', "empty axis"),
    "unequal zip": ('name="b"\n[zip]\n"model.generator.dim" = [32, 48]\n"model.generator.heads" = [2]\n',
                    "equal lengths"),
    "malformed": ('name="b"\n[grid\n"model.planner.depth" = [1]\n', "malformed TOML"),
    "top-level typo": ('name="b"\nseed = [1]\n', "unknown key 'seed'"),
    "slurm typo": ('name="b"\n[slurm]\npartiton = "gpu"\n', "unknown option 'partiton'"),
    "bad base": ('name="b"\nbase = ["model.planner.depth"]\n', "not of the form key=value"),
    "key in base and grid": ('name="b"\nbase = ["model=tiny", "train.steps=3"]\n[grid]\n"train.steps" = [1, 2]\n',
                             "'train.steps' is set both in base and in [grid]; keep it in one of them"),
    "key in base and seeds": ('name="b"\nbase = ["model=tiny", "seed=3"]\nseeds = [0, 1]\n',
                              "'seed' is set both in base and in seeds"),
    "key twice in base": ('name="b"\nbase = ["model=tiny", "train.steps=3", "train.steps=4"]\n',
                          "base: 'train.steps' is set twice"),
    "override undone by the preset": ('name="b"\nbase = ["model.planner.depth=3", "model=tiny"]\n',
                                      "model.planner.depth=3 is undone by the later model=tiny"),
    "a million points": ('name="b"\nbase = ["model=tiny"]\n[grid]\n"train.steps" = [' +
                         ", ".join(map(str, range(1, 1001))) + ']\n"seed" = [' + ", ".join(map(str, range(1000))) +
                         ']\n', "1000000 points"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_bad_grid_fails_in_one_line_and_submits_nothing(case, tmp_path, capsys):
    body, needle = BAD_GRIDS[case]
    grid = write_grid(tmp_path / "bad.toml", body)
    with pytest.raises(SystemExit) as exit_info:
        main([str(grid), "--results", str(tmp_path / "results"), "--cluster", "local", "--run-fn", TOY])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err
    assert str(grid) in err
    assert not (tmp_path / "results").exists()


def test_bad_cli_axis_and_missing_file(tmp_path, capsys):
    grid = write_grid(tmp_path / "ok.toml", TOY_GRID)
    for argv, needle in (([str(grid), "train.stepz=1,2"], "train.stepz"),
                         ([str(grid), "train.steps=1,"], "empty value"),
                         ([str(tmp_path / "nope.toml")], "not found")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--results", str(tmp_path / "results")])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--array-parallelism", "-1"], "--array-parallelism: got -1, must be >= 1"),
    (["--array-parallelism", "0"], "--array-parallelism: got 0, must be >= 1"),
    (["--timeout-min", "-1"], "--timeout-min: got -1, must be >= 1"),
    (["--cpus-per-task", "0"], "--cpus-per-task: got 0, must be >= 1"),
    (["--mem-gb", "0"], "--mem-gb: got 0.0, must be > 0"),
    (["--gpus-per-node", "-2"], "--gpus-per-node: got -2, must be >= 0"),
    (["train.steps=-5"], "train.steps: got -5, must be >= 1"),
    (["--dry-run", "eval.num_videos=0"], "eval.num_videos: got 0, must be >= 1"),
])
def test_bad_sweep_option_or_value_fails_before_anything_runs(argv, needle, tmp_path, capsys):
    grid = write_grid(tmp_path / "ok.toml", TOY_GRID)
    with pytest.raises(SystemExit) as exit_info:
        main([str(grid), *argv, "--results", str(tmp_path / "results"), "--cluster", "local", "--run-fn", TOY])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err
    assert not (tmp_path / "results").exists()


def test_bad_slurm_table_value_names_the_grid_file(tmp_path):
    from mardini_bench.sweep import launch

    with pytest.raises(GridError, match=r"g \[slurm\] array_parallelism: got 0, must be >= 1"):
        launch.launch_options({"array_parallelism": 0}, "g")
    with pytest.raises(GridError, match=r"g \[slurm\] timeout_min: got -1, must be >= 1"):
        launch.launch_options({"timeout_min": -1}, "g")


def test_dry_run_prints_every_run_and_writes_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mardini_bench.sweep", "ablations/quickstart.toml", "--dry-run",
                          "--results", str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("#")]
    points, _ = resolve(load_grid(REPO / "ablations" / "quickstart.toml"))
    assert lines == [f"#{p.idx} {p.run_id} : {' '.join(p.overrides)}" for p in points]
    assert not (tmp_path / "r").exists()


def test_multi_node_dry_run_prints_the_sbatch_options_and_submits_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mardini_bench.sweep", "ablations/paper_scale.toml", "--dry-run",
                          "data.root=/data/videos", "--results", str(tmp_path / "r")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8", "srun "):
        assert line in out.stdout, line
    assert str(tmp_path / "r" / "paper_scale" / "submitit") in out.stdout
    assert not (tmp_path / "r").exists()
    points, _ = resolve(with_cli_args(load_grid(REPO / "ablations" / "paper_scale.toml"), ["data.root=/data/videos"]))
    cfg = points[0].config
    assert (cfg.train.parallel, cfg.train.activation_checkpointing, cfg.train.lr, cfg.data.fps) == ("fsdp", True, 1.4e-4, 8)
    assert [stage for stage, _ in cfg.train.schedule] == ["generator_warmup", "planner_warmup", "joint"]
    with pytest.raises(GridError, match=r"g \[slurm\] nodes: got 0, must be >= 1"):
        launch.launch_options({"nodes": 0}, "g")


def test_launch_options_grid_then_cli_and_the_sbatch_script(tmp_path):
    import submitit

    from mardini_bench.sweep import launch

    grid = launch.launch_options({"partition": "debug", "timeout_min": 90, "additional_parameters": {"qos": "low"},
                                  "setup": ["source .venv/bin/activate"]}, "g")
    opts = launch.merge(grid, {"partition": "gpu", "gpus_per_node": 1, "mem_gb": None, "setup": ("module load x",),
                               "additional_parameters": {"account": "lab"}, "array_parallelism": 2})
    assert (opts.partition, opts.timeout_min, opts.gpus_per_node, opts.mem_gb) == ("gpu", 90, 1, None)
    assert opts.additional_parameters == {"qos": "low", "account": "lab"}
    assert opts.setup == ("source .venv/bin/activate", "module load x")
    params = launch.executor_parameters(opts, "toy")
    slurm = submitit.SlurmExecutor(folder=tmp_path)  # AutoExecutor's own translation, without sbatch
    slurm.update_parameters(**slurm._convert_parameters({k.removeprefix("slurm_"): v for k, v in params.items()}))
    slurm.parameters["map_count"] = 4  # what a 4-run batch() sets
    script = slurm._make_submission_file_text("true", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --array=0-3%2", "#SBATCH --qos=low", "#SBATCH --account=lab",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --time=90", "module load x"):
        assert line in script, line
    launch.make_executor(tmp_path / "submitit", "local", opts, "toy")  # slurm_* ignored locally
    with pytest.raises(GridError, match="timeout_min: wrong type"):
        launch.launch_options({"timeout_min": "1h"}, "g")


# ----------------------------------------------------------------------------------------------
# RunJob in-process: result, failure record, idempotence, lock, empty checkpoint
# ----------------------------------------------------------------------------------------------
def make_run_dir(tmp_path: Path, *overrides: str) -> Path:
    cfg = apply_overrides(RunConfig(), ["model=tiny", "train.steps=4", "train.checkpoint_every=2", *overrides])
    run_dir = tmp_path / config_hash(cfg)
    rundir.write_json(run_dir / "config.json", to_dict(cfg))
    return run_dir


def test_runjob_runs_once_and_returns_the_stored_result(tmp_path):
    run_dir = make_run_dir(tmp_path)
    result = RunJob(run_dir, toy_run)()
    assert rundir.read_result(run_dir) == result and rundir.run_state(run_dir) == ("DONE", "")
    calls = []
    assert RunJob(run_dir, lambda cfg, d: calls.append(1))() == result and not calls


def test_runjob_records_failure_then_clears_it_on_success(tmp_path):
    missing = tmp_path / "no-such-videos"
    run_dir = make_run_dir(tmp_path, f"data.root={missing}")
    with pytest.raises(FileNotFoundError):
        RunJob(run_dir, toy_run)()
    failed = json.loads((run_dir / "failed.json").read_text())
    assert failed["type"] == "FileNotFoundError" and str(missing) in failed["message"]
    assert "toy_run" in failed["traceback"]
    state, message = rundir.run_state(run_dir)
    assert state == "FAILED" and message.startswith("FileNotFoundError: data.root")
    missing.mkdir()
    RunJob(run_dir, toy_run)()
    assert not (run_dir / "failed.json").exists() and rundir.run_state(run_dir)[0] == "DONE"


def test_runjob_on_a_nonzero_rank_trains_but_leaves_the_folder_to_rank_0(tmp_path, monkeypatch):
    """Multi-task jobs: every rank runs the function; only global rank 0 locks and writes records."""
    from mardini_bench.sweep import job

    run_dir = make_run_dir(tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    monkeypatch.setattr(job, "global_rank", lambda: 1)
    holder = rundir.RunLock(run_dir)
    assert holder.acquire()  # rank 0 holds the folder; rank 1 must not wait for or take the lock
    try:
        calls = []
        out = RunJob(run_dir, lambda cfg, d: calls.append(d) or {"status": "PARTIAL"})()
    finally:
        holder.release()
    assert out == {"status": "PARTIAL"} and calls == [run_dir]
    assert set(p.name for p in run_dir.iterdir()) - set(before) <= {"run.lock"}  # the holder's lock file only
    assert not (run_dir / "started.json").exists() and rundir.read_result(run_dir) is None


def test_runjob_refuses_a_second_copy_in_the_same_folder(tmp_path):
    run_dir = make_run_dir(tmp_path)
    holder = rundir.RunLock(run_dir)
    assert holder.acquire()
    try:
        assert rundir.lock_held(run_dir)
        with pytest.raises(RuntimeError, match="in use by another job"):
            RunJob(run_dir, toy_run)()
        assert not (run_dir / "failed.json").exists()  # the running copy has not failed
    finally:
        holder.release()
    assert not rundir.lock_held(run_dir)


def test_checkpoint_resubmits_an_empty_job(tmp_path):
    run_dir = make_run_dir(tmp_path)
    job = RunJob(run_dir)
    job.some_progress = list(range(1000))  # state a trainer might carry: must not travel
    delayed = job.checkpoint()
    assert isinstance(delayed.function, RunJob) and delayed.args == () and delayed.kwargs == {}
    assert vars(delayed.function) == {"run_dir": str(run_dir), "run_fn": "mardini_bench.run.one_run:run"}
    assert len(pickle.dumps(delayed.function)) < 300


def test_a_job_queued_under_the_runner_s_earlier_name_still_finds_it():
    """A job pickled before run/runner.py became run/one_run.py (queued, or requeued after preemption)."""
    from mardini_bench.run import one_run

    assert load_run_fn("mardini_bench.run.runner:run") is one_run.run is load_run_fn("mardini_bench.run.one_run:run")


def test_write_json_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "result.json"
    rundir.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        rundir.write_json(path, {"b": object()})  # fails mid-write
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_write_json_writes_non_finite_numbers_as_null(tmp_path):
    rundir.write_json(tmp_path / "r.json", {"final_loss": float("nan"), "values": [float("inf"), 1.5]})
    strict = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert strict == {"final_loss": None, "values": [None, 1.5]}


def test_git_info_tolerates_no_git(tmp_path):
    info = rundir.git_info(tmp_path)
    assert info["sha"] is None and info["dirty"] is None and info["error"]
    here = rundir.git_info(REPO)
    assert here["sha"] is None or len(here["sha"]) == 40


# ----------------------------------------------------------------------------------------------
# Real local sweeps (submitit LocalExecutor: one subprocess per run)
# ----------------------------------------------------------------------------------------------
def test_local_sweep_completes_collects_and_skips_finished_runs(tmp_path):
    grid = write_grid(tmp_path / "toy.toml", TOY_GRID)
    results = tmp_path / "results"
    out = subprocess.run(sweep_cmd(grid, results, report=True), capture_output=True, text=True, env=job_env(),
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    sweep = results / "toy"
    assert (sweep / "report.md").exists()  # the laptop path ends with the report
    done = results_in(sweep)
    assert len(done) == 4 and all(done.values())
    assert "4 DONE" in out.stdout and (sweep / "results.csv").exists()
    run = sweep / next(iter(done))
    for name in ("config.json", "overrides.json", "git.json", "submitted.json", "started.json", "log.jsonl"):
        assert (run / name).exists(), name
    assert (run / "submitit.out").resolve().exists()  # link to this run's submitit log
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert sorted(p["run_id"] for p in manifest["points"]) == sorted(done)

    again = subprocess.run(sweep_cmd(grid, results), capture_output=True, text=True, env=job_env(), timeout=120)
    assert again.returncode == 0 and again.stdout.count("DONE: skipped") == 4
    assert "submitted" not in again.stdout and results_in(sweep) == done


def test_local_array_parallelism_caps_runs_at_once(tmp_path):
    grid = write_grid(tmp_path / "toy.toml", TOY_GRID)
    results = tmp_path / "results"
    out = subprocess.run(sweep_cmd(grid, results, "--array-parallelism", "2"), capture_output=True, text=True,
                         env=job_env(), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "at most 2 at once" in out.stdout and "4 DONE" in out.stdout
    spans = []
    for run in (results / "toy").iterdir():
        if (run / "result.json").exists():
            spans.append((json.loads((run / "started.json").read_text())["started_at"], (run / "result.json").stat().st_mtime))
    assert len(spans) == 4
    most = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert most <= 2


def test_failing_run_is_reported_failed_while_the_others_finish(tmp_path):
    grid = write_grid(tmp_path / "toy.toml", TOY_GRID.replace("seeds = [0, 1]", "seeds = [0]"))
    missing = tmp_path / "missing-videos"
    results = tmp_path / "results"
    out = subprocess.run(sweep_cmd(grid, results, "model.planner.depth=1", f"data.root=none,{missing}"), capture_output=True, text=True,
                         env=job_env(), timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    status = subprocess.run([sys.executable, "-m", "mardini_bench.sweep", "status", str(results / "toy")],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0
    failed = [line for line in status.stdout.splitlines() if " FAILED " in line]
    assert len(failed) == 1 and "FileNotFoundError: data.root" in failed[0] and str(missing) in failed[0]
    assert status.stdout.count(" DONE ") == 1 and "1 DONE, 1 FAILED" in status.stdout


def test_a_refused_submission_leaves_the_sweep_folder_as_it_was(tmp_path, capsys, monkeypatch):
    """The scheduler refuses the job array (a bad sbatch option): nothing was queued, so no new run folder
    (it would read MISSING), the earlier sweep.json, or no sweep folder at all, is left behind."""
    def refuse(*args, **kwargs):
        raise launch.LaunchError("submission to slurm failed, nothing was queued: sbatch: invalid qos")

    monkeypatch.setattr(launch, "submit", refuse)
    grid = write_grid(tmp_path / "toy.toml", TOY_GRID)
    argv = [str(grid), "--results", str(tmp_path / "results"), "--cluster", "local", "--run-fn", TOY]
    with pytest.raises(SystemExit):
        main(argv)
    assert capsys.readouterr().err.strip().endswith("nothing was queued: sbatch: invalid qos")
    assert not (tmp_path / "results").exists()
    sweep_dir, points = prepared_sweep(tmp_path)  # an earlier launch of the same folder, three runs finished
    before = {p.name: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and p.parent == sweep_dir}
    with pytest.raises(SystemExit):
        main([*argv, "model.planner.depth=3,4"])  # new points: new run folders
    assert {p.name: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and p.parent == sweep_dir} == before
    assert sorted(d.name for d in sweep_dir.iterdir() if d.is_dir()) == sorted(p.run_id for p in points)


def test_what_a_submission_prints_goes_to_its_log_not_the_terminal(tmp_path, capfd):
    """submitit prints sbatch's refusal on stderr itself, and the local controllers inherit stderr: the
    terminal shows only the launcher's own lines."""
    log = tmp_path / "submitit" / launch.SUBMISSION_LOG
    with launch.submission_stderr(log):
        print("sbatch: error: Batch job submission failed", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('Traceback (controller)\\n')"], check=True)
    print("error: one line", file=sys.stderr)
    assert capfd.readouterr().err == "error: one line\n"
    assert log.read_text() == "sbatch: error: Batch job submission failed\nTraceback (controller)\n"


def test_debug_cluster_runs_in_process(tmp_path, capsys):
    grid = write_grid(tmp_path / "toy.toml", TOY_GRID.replace("seeds = [0, 1]", "seeds = [0]"))
    sys.modules.setdefault("test_sweep", sys.modules[__name__])  # the job imports TOY by name
    code = main([str(grid), "--results", str(tmp_path / "r"), "--cluster", "debug", "--run-fn", TOY,
                 "train.steps=2", "train.checkpoint_every=1", "--no-report"])
    assert code == 0 and len(results_in(tmp_path / "r" / "toy")) == 2


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


# Real tiny runs (the default runner: train, checkpoint, evaluate): one short, three long enough to
# be killed mid-training. PSNR/SSIM only, so the test needs no metric weights.
KILL_GRID = """
name = "kill"
base = ["model=tiny", "model.diffusion.sample_steps=2", "data.frames=5", "data.resolution=16",
        "data.num_train=16", "data.num_eval=4", "train.batch_size=2", "train.warmup_steps=2",
        "train.checkpoint_every=10", "train.log_every=10", "eval.tasks=[interpolation]",
        "eval.metrics=[psnr,ssim]", "eval.baselines=[copy_nearest]", "eval.num_videos=2", "seed=0"]
[zip]
"model.planner.depth" = [1, 1, 2, 2]
"train.steps" = [4, 400, 400, 500]
"""


def real_sweep_cmd(grid: Path, results: Path) -> list:
    return [sys.executable, "-m", "mardini_bench.sweep", str(grid), "--results", str(results),
            "--cluster", "local", "--no-report"]


def test_kill_minus_9_part_way_then_rerun_gives_exactly_one_result_per_run(tmp_path, one_thread):
    grid = write_grid(tmp_path / "kill.toml", KILL_GRID)
    results, sweep = tmp_path / "results", tmp_path / "results" / "kill"
    first = subprocess.Popen(real_sweep_cmd(grid, results), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=job_env(), start_new_session=True)  # one process group: sweep + its jobs

    def part_way() -> bool:  # the short run has finished, every other one has checkpointed
        runs = [d for d in sweep.iterdir() if (d / "config.json").exists()] if sweep.exists() else []
        return len(runs) == 4 and sum((d / "result.json").exists() for d in runs) == 1 and \
            all((d / "last.pt").exists() for d in runs)

    try:
        _wait_for(part_way, 240, "one result and three checkpoints")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert sum(v is not None for v in results_in(sweep).values()) == 1
    again = subprocess.run(real_sweep_cmd(grid, results), capture_output=True, text=True, env=job_env(), timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("DONE: skipped") == 1 and "submitted 3 runs" in again.stdout
    done = results_in(sweep)
    assert len(done) == 4 and all(r["status"] == "DONE" for r in done.values())
    assert len([d for d in sweep.iterdir() if (d / "overrides.json").exists()]) == 4  # no second folders
    resumed = {}
    for run_id, result in done.items():
        log = [json.loads(line) for line in (sweep / run_id / "log.jsonl").read_text().splitlines()]
        steps = [e["step"] for e in log if "event" not in e]
        assert steps == sorted(set(steps)) and steps[-1] == result["train"]["steps"]  # no step logged twice
        resumes = [e["step"] for e in log if e.get("event") == "resume"]
        if resumes:
            resumed[run_id] = resumes[0]
        assert {r["method"] for r in result["records"]} == {"model", "copy_nearest"}
    assert len(resumed) == 3 and all(step > 0 for step in resumed.values())
    # The resumed run with the shortest schedule gives the same numbers as an uninterrupted run of it.
    run_id = min(resumed, key=lambda r: done[r]["train"]["steps"])
    fresh = tmp_path / "fresh" / run_id
    rundir.write_json(fresh / "config.json", json.loads((sweep / run_id / "config.json").read_text()))
    values = lambda res: [(r["task"], r["method"], r["metric"], r["value"]) for r in res["records"]]  # noqa: E731
    assert values(RunJob(fresh)()) == values(done[run_id])


# ----------------------------------------------------------------------------------------------
# Damaged files: reported as such by status and collect, never RUNNING, never a crash
# ----------------------------------------------------------------------------------------------
DAMAGES = {
    "truncated result": ("result.json", '{"run_id": "x", "status": "DONE", "reco', "damaged JSON"),
    "empty result": ("result.json", "", "empty file"),
    "result is a list": ("result.json", "[1, 2]", "expected a JSON object, got array"),
    "records not a list": ("result.json", '{"status": "DONE", "records": "psnr"}', "'records' must be a list"),
    "truncated config": ("config.json", '{"model": {"planner', "damaged JSON"),
    "config is a string": ("config.json", '"model=tiny"', "expected a JSON object, got string"),
}


def prepared_sweep(tmp_path: Path) -> tuple:
    from mardini_bench.sweep import plan

    grid = load_grid(write_grid(tmp_path / "toy.toml", TOY_GRID))
    points, _ = resolve(grid)
    sweep_dir = tmp_path / "results" / grid.name
    plan.write_manifest(sweep_dir, grid, points, "local")
    for p in points:
        plan.prepare(sweep_dir / p.run_id, grid, p, {"sha": None})
    for p in points[1:]:  # the others finish (one toy step each)
        toy_run(apply_overrides(p.config, ["train.steps=1"]), sweep_dir / p.run_id)
    return sweep_dir, points


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damaged_run_files_are_reported_by_status_and_collect(case, tmp_path, capsys):
    from mardini_bench.analysis.results import collect

    name, text, fault = DAMAGES[case]
    sweep_dir, points = prepared_sweep(tmp_path)
    damaged = sweep_dir / points[0].run_id
    rundir.write_json(damaged / rundir.STARTED, {"host": rundir.this_host(), "pid": os.getpid()})
    (damaged / name).write_text(text)
    state, detail = rundir.run_state(damaged)
    assert state == "DAMAGED" and str(damaged / name) in detail and fault in detail
    assert main(["status", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{points[0].run_id} DAMAGED" in out and "RUNNING" not in out
    with pytest.warns(UserWarning, match="DAMAGED"):
        df = collect(sweep_dir)
    rows = df[df["run_id"] == points[0].run_id]
    assert set(rows["status"]) == {"DAMAGED"} and rows["value"].isna().all() and fault in rows["error"].iloc[0]
    assert (df[df["run_id"] != points[0].run_id]["status"] == "DONE").all()


def test_damaged_config_fails_the_job_naming_the_file(tmp_path):
    run_dir = make_run_dir(tmp_path)
    (run_dir / "config.json").write_text('{"train": {"steps": "many"}}')
    with pytest.raises(rundir.DamagedFileError, match=r"config.json: train.steps: expected int"):
        RunJob(run_dir, TOY)()
    assert rundir.read_json(run_dir / rundir.FAILED)["type"] == "DamagedFileError"


@pytest.mark.parametrize("body, needle", [
    ('{"name": "toy"}', "no valid 'points' list"),
    ('{"name": "toy", "points": [{"idx": 0}]}', "no valid 'points' list"),
    ('{"name": "to', "damaged JSON"),
    ("[]", "expected a JSON object"),
])
def test_damaged_sweep_json_is_one_line(body, needle, tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(body)
    with pytest.raises(SystemExit) as exit_info:
        main(["status", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "sweep.json" in err and needle in err


def test_local_runs_share_the_cores_within_their_cpus_per_task():
    assert launch.local_threads(1, None, cores=2) == 2  # one run owns the machine
    assert launch.local_threads(2, None, cores=2) == 1
    assert launch.local_threads(4, 2, cores=2) == 1  # never more threads than cores
    assert launch.local_threads(1, 1, cores=2) == 1  # --cpus-per-task 1 beside other work
    assert launch.local_threads(1, 2, cores=16) == 2



class _Job:
    """A job that ends when the test says so."""

    def __init__(self, run_dir: Path, log: list):
        self.run_dir, self.job_id, self.ended = run_dir, run_dir.name, False
        log.append(run_dir.name)

    def done(self) -> bool:
        return self.ended


def test_a_run_that_reuses_a_siblings_training_starts_once_that_sibling_has_ended(tmp_path, monkeypatch):
    grid = from_mapping({"name": "g", "base": ["model=tiny", "train.steps=2"], "seeds": [0],
                         "grid": {"model.diffusion.sample_steps": [1, 2], "model.planner.depth": [1, 2]}},
                        "test", "g")
    points, _ = resolve(grid)
    dirs = [tmp_path / p.run_id for p in points]
    after = launch.training_siblings([(d, p.config) for d, p in zip(dirs, points)])
    depth = {d: p.config.model.planner.depth for d, p in zip(dirs, points)}
    # the two sampling settings of one depth train the same weights; the two depths do not
    assert len(after) == 2 and all(depth[d] == depth[s] and d != s for d, s in after.items())

    started: list = []
    jobs: dict = {}

    def fake_submit(executor, run_dirs, run_fn):
        if run_dirs[0] in after:  # it reuses a training: that run has ended by now
            assert jobs[after[run_dirs[0]]].ended
        jobs[run_dirs[0]] = _Job(run_dirs[0], started)
        return [jobs[run_dirs[0]]]

    monkeypatch.setattr(launch, "submit", fake_submit)
    first = [d for d in dirs if d not in after]

    def end_first(_seconds):  # time.sleep while the launcher waits: the trainers end, one per poll
        live = [d for d in first if d in jobs and not jobs[d].ended]
        if live:
            jobs[live[0]].ended = True

    monkeypatch.setattr(launch.time, "sleep", end_first)
    launch.submit_windowed(None, dirs, None, window=len(dirs), after=after)
    order = started
    assert sorted(order) == sorted(d.name for d in dirs)
    for d, sibling in after.items():  # every reusing run started after its trainer had ended
        assert order.index(d.name) > order.index(sibling.name)
    # the two trainers started first, together: a waiting run never holds a slot
    assert set(order[:2]) == {d.name for d in first}
