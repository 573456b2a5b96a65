"""Sweeps on a real SLURM cluster (tests/slurm/slurm-up.sh): one job array, a requeue that resumes
from the checkpoint on disk, and a failing run reported FAILED while the others finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from mardini_bench.sweep import rundir
from mardini_bench.sweep.status import sweep_status

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
RUN_FN = "test_sweep:toy_run"  # tests/test_sweep.py: checkpoints, resumes and fails like the runner
SLURM = """
[slurm]
partition = "debug"
timeout_min = 30
cpus_per_task = 1
"""
ARRAY_GRID = """
name = "arr"
base = ["model=tiny", "train.steps=12", "train.checkpoint_every=3", "seed=0"]
[zip]
"model.planner.depth" = [1, 2, 2]
"data.root" = ["none", "none", "{missing}"]
""" + SLURM
REQUEUE_GRID = """
name = "req"
base = ["model=tiny", "train.steps={steps}", "train.checkpoint_every={every}", "seed=0"]
""" + SLURM


def job_env() -> Dict[str, str]:
    env = dict(os.environ)  # sbatch exports it to the jobs, so they can import the run function
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "tests"), env.get("PYTHONPATH")) if p)
    return env


def launch(tmp: Path, body: str) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    grid = tmp / "grid.toml"
    grid.write_text(body)
    cmd = [sys.executable, "-m", "mardini_bench.sweep", str(grid), "--cluster", "slurm",
           "--results", str(tmp / "results"), "--run-fn", RUN_FN]
    out = subprocess.run(cmd, capture_output=True, text=True, env=job_env(), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def wait_settled(sweep: Path, timeout: float) -> List:
    """Poll `status` until every run is DONE or FAILED."""
    end = time.monotonic() + timeout
    while True:
        rows = sweep_status(sweep)
        if all(r.state in ("DONE", "FAILED") for r in rows):
            return rows
        assert time.monotonic() < end, f"runs not finished after {timeout} s: {rows}"
        time.sleep(0.5)


def sacct(*args: str) -> List[str]:
    out = subprocess.run(["sacct", "-n", "-P", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def eventually(check: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll `check` until it returns something truthy. slurmdbd records array tasks and job ends a
    moment after the jobs themselves, so what sacct shows lags the run folders."""
    end = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < end, f"still false after {timeout} s"
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def array_sweep(slurm_cluster, tmp_path_factory):
    """Three runs in one array, one of them with a dataset root that does not exist."""
    tmp = tmp_path_factory.mktemp("array")
    start = time.monotonic()
    out = launch(tmp, ARRAY_GRID.format(missing=tmp / "missing-videos"))
    returned = time.monotonic() - start
    sweep = tmp / "results" / "arr"
    rows = wait_settled(sweep, 120)
    return {"sweep": sweep, "out": out.stdout, "returned_s": returned, "rows": rows,
            "settled_s": time.monotonic() - start}


def test_sweep_is_one_job_array_and_the_cli_does_not_wait(array_sweep):
    sweep, rows = array_sweep["sweep"], array_sweep["rows"]
    assert "not waiting" in array_sweep["out"] and f"status {sweep}" in array_sweep["out"]
    job_ids = [rundir.read_json(sweep / r.run_id / rundir.SUBMITTED)["job_id"] for r in rows]
    assert len(rows) == 3 and len(set(job_ids)) == 3
    array_ids = {j.split("_")[0] for j in job_ids}
    assert len(array_ids) == 1 and all("_" in j for j in job_ids), job_ids  # ArrayJobID_TaskID
    (array_id,) = array_ids
    def listed() -> set:
        return {line.split("|")[0] for line in sacct("-X", "-o", "JobID", "-j", array_id)}
    eventually(lambda: set(job_ids) <= listed())  # each task recorded under the one array id
    print(f"\nsubmit returned in {array_sweep['returned_s']:.1f} s; all settled in {array_sweep['settled_s']:.1f} s")


def test_failing_run_is_failed_with_its_message_while_the_others_finish(array_sweep):
    rows = array_sweep["rows"]
    (failed,) = [r for r in rows if r.state == "FAILED"]
    assert failed.detail.startswith("FileNotFoundError: data.root") and "missing-videos" in failed.detail
    assert sum(r.state == "DONE" for r in rows) == 2
    status = subprocess.run([sys.executable, "-m", "mardini_bench.sweep", "status", str(array_sweep["sweep"])],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "2 DONE, 1 FAILED" in status.stdout
    (line,) = [x for x in status.stdout.splitlines() if " FAILED " in x]
    assert "FileNotFoundError: data.root" in line
    eventually(lambda: sweep_status(array_sweep["sweep"])[2].scheduler.endswith(": FAILED"))  # the scheduler agrees


def _events(run_dir: Path) -> List[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_external_requeue_resumes_from_the_checkpoint_with_equal_metrics(slurm_cluster, tmp_path):
    # The same point twice, in two sweep folders: one is requeued part-way, the other runs through.
    steps, every = 400, 5  # 20 s of toy steps: the job is still running when KillWait (5 s) ends
    launch(tmp_path / "a", REQUEUE_GRID.format(steps=steps, every=every))
    launch(tmp_path / "b", REQUEUE_GRID.format(steps=steps, every=every))
    sweep_a, sweep_b = tmp_path / "a" / "results" / "req", tmp_path / "b" / "results" / "req"
    (run_id,) = [p["run_id"] for p in json.loads((sweep_a / "sweep.json").read_text())["points"]]
    run_a = sweep_a / run_id
    job_id = rundir.read_json(run_a / rundir.SUBMITTED)["job_id"]
    end = time.monotonic() + 60
    while (rundir.read_json(run_a / "last.pt") or {}).get("step", 0) < 4 * every:
        assert time.monotonic() < end, "no checkpoint written"
        time.sleep(0.2)
    # An external requeue sends no USR2: the job restarts from the submitted pickle, which holds no
    # state, so its progress can only come from last.pt.
    requeued_at = time.monotonic()
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    rows = wait_settled(sweep_a, 150) + wait_settled(sweep_b, 30)
    assert [r.state for r in rows] == ["DONE", "DONE"]
    events = _events(run_a)
    resumes = [e for e in events if e["event"] == "resume"]
    assert events[0] == {"event": "start", "step": 0} and resumes and resumes[0]["step"] > 0
    assert resumes[0]["step"] < steps
    assert rundir.read_json(run_a / rundir.STARTED)["restarts"] >= 1  # SLURM_RESTART_COUNT
    assert rundir.read_result(run_a)["records"] == rundir.read_result(sweep_b / run_id)["records"]
    print(f"\nrequeued at step >= {4 * every}, resumed at step {resumes[0]['step']}, "
          f"done {time.monotonic() - requeued_at:.1f} s after the requeue")


REAL_GRID = """
name = "real"
base = ["model=tiny", "train.steps=24", "train.checkpoint_every=2", "data.num_train=64", "eval.num_videos=2",
        "eval.tasks=[interpolation]", "eval.metrics=[psnr,ssim]", "eval.baselines=[]", "seed=0"]
""" + SLURM


@pytest.mark.slow  # minutes: two real trainings + evaluation and cost on 2 cores
def test_real_run_requeued_mid_training_matches_an_uninterrupted_one(slurm_cluster, tmp_path):
    pytest.importorskip("mardini_bench.run.one_run", reason="needs the runner (mardini_bench.run.one_run.run)")
    # The same point twice with the default run function (the real runner): one requeued part-way.
    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "grid.toml").write_text(REAL_GRID)
        subprocess.run([sys.executable, "-m", "mardini_bench.sweep", str(tmp_path / name / "grid.toml"),
                        "--cluster", "slurm", "--results", str(tmp_path / name / "results")],
                       check=True, capture_output=True, timeout=120)
        paths.append(tmp_path / name / "results" / "real")
    (run_id,) = [p["run_id"] for p in json.loads((paths[0] / "sweep.json").read_text())["points"]]
    run_a = paths[0] / run_id
    end = time.monotonic() + 150
    while not (run_a / "last.pt").exists():
        assert time.monotonic() < end, "no checkpoint written"
        time.sleep(0.2)
    job_id = rundir.read_json(run_a / rundir.SUBMITTED)["job_id"]
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
    rows = wait_settled(paths[0], 600) + wait_settled(paths[1], 300)
    assert [r.state for r in rows] == ["DONE", "DONE"], rows
    resumes = [e for e in _events(run_a) if e.get("event") == "resume"]
    assert resumes and 0 < resumes[0]["step"] < 24
    losses = [[e["loss"] for e in _events(p / run_id) if "loss" in e] for p in paths]
    assert losses[0] == losses[1] and len(losses[0]) >= 3  # the logged curve, step for step
    a, b = rundir.read_result(run_a), rundir.read_result(paths[1] / run_id)
    assert a["train"]["final_loss"] == b["train"]["final_loss"]
    assert [(r["task"], r["metric"], r["value"]) for r in a["records"]] == \
        [(r["task"], r["metric"], r["value"]) for r in b["records"]]
    print(f"\nreal run requeued, resumed at step {resumes[0]['step']}; final loss {a['train']['final_loss']:.5f}")


def test_second_bring_up_is_refused(slurm_cluster):
    up = subprocess.run([str(REPO / "tests" / "slurm" / "slurm-up.sh")], capture_output=True, text=True, timeout=60)
    assert up.returncode == 1 and "already" in up.stderr and "slurm-down.sh" in up.stderr
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    assert "UP" in ping.stdout  # and the running cluster is untouched
