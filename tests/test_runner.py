"""Runner: result.json last and atomic, records and evidence files, cached baselines, failures, CLI."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mardini_bench.config import RunConfig, apply_overrides, config_hash, to_dict
from mardini_bench.io import write_json
from mardini_bench.metrics.distribution import FrechetMetric
from mardini_bench.registry import BASELINES, TASKS
from mardini_bench.run import evaluate, one_run
from models import baselines
from mardini_bench.run.state import CONFIG
from mardini_bench.weights import WeightsError

TINY = ["model=tiny", "model.diffusion.sample_steps=2", "data.frames=5", "data.resolution=16",
        "data.num_train=8", "data.num_eval=6", "train.batch_size=2", "train.steps=2", "train.warmup_steps=1",
        "eval.tasks=[interpolation,expansion]", "eval.metrics=[psnr,ssim]", "eval.num_videos=3",
        "eval.samples=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(*extra: str) -> RunConfig:
    return apply_overrides(RunConfig(), TINY + list(extra))


# ----------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------
def ramp(frames: int) -> torch.Tensor:
    """(1, T, 3, 2, 2) clip whose frame t is the constant t / 10."""
    return (torch.arange(frames, dtype=torch.float32) / 10)[None, :, None, None, None].expand(1, frames, 3, 2, 2)


def test_copy_nearest_takes_the_closest_reference_earlier_on_ties():
    mask = torch.tensor([[False, True, True, True, False, True]])
    out = baselines.copy_nearest(ramp(6), mask)
    assert (out[0, :, 0, 0, 0] * 10).round().tolist() == [0, 0, 0, 4, 4, 4]


def test_linear_blend_interpolates_and_copies_past_the_last_reference():
    mask = torch.tensor([[False, True, True, True, False, True]])
    out = baselines.linear_blend(ramp(6), mask)
    assert torch.allclose(out[0, :, 0, 0, 0] * 10, torch.tensor([0.0, 1, 2, 3, 4, 4]))
    assert torch.equal(BASELINES.build("linear_blend", ramp(6), mask), out)


def test_baselines_reject_a_clip_without_references():
    with pytest.raises(ValueError, match="reference"):
        baselines.copy_nearest(ramp(3), torch.ones(1, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------
# A whole run
# ----------------------------------------------------------------------------------------------
def test_run_writes_records_samples_and_reuses_cached_baselines(tmp_path, monkeypatch):
    cfg = tiny_cfg()
    result = one_run.run(cfg, tmp_path / "a")
    on_disk = json.loads((tmp_path / "a" / "result.json").read_text())
    assert on_disk == json.loads(json.dumps(result)) and on_disk["status"] == "DONE"
    assert on_disk["train"]["steps"] == 2 and np.isfinite(on_disk["train"]["final_loss"])
    assert set(one_run.COST_KEYS) <= set(on_disk["cost"]) and on_disk["cost"]["params_planner"] > 0
    keys = {(r["task"], r["method"], r["metric"]) for r in on_disk["records"]}
    assert keys == {(t, m, k) for t in ("interpolation", "expansion")
                    for m in ("model", "copy_nearest", "linear_blend") for k in ("psnr", "ssim")}
    for rec in on_disk["records"]:
        assert len(rec["per_video"]) == 3 and rec["value"] == pytest.approx(np.mean(rec["per_video"]))
        assert rec["protocol"]["task"] == rec["task"] and rec["protocol"]["num_videos"] == 3
    samples = np.load(tmp_path / "a" / "eval" / "interpolation" / "samples.npz")
    assert samples["output"].shape == (2, 5, 3, 16, 16) and samples["output"].dtype == np.uint8
    assert samples["mask"].tolist() == [[0, 1, 1, 1, 0]] * 2

    # Expansion has a reference on one side only: linear blending equals copying there, one entry.
    assert len(list((tmp_path / evaluate.BASELINE_DIR).iterdir())) == 3
    exp = {r["method"]: r["value"] for r in on_disk["records"] if r["task"] == "expansion" and r["metric"] == "psnr"}
    assert exp["copy_nearest"] == exp["linear_blend"]

    # A second run of the sweep (other seed, same data and eval) must not score the baselines again.
    monkeypatch.setattr(evaluate, "score", _only_model(evaluate.score))
    other = one_run.run(tiny_cfg("seed=1"), tmp_path / "b")
    same = lambda res: {(r["task"], r["method"], r["metric"]): r["value"] for r in res["records"] if r["method"] != "model"}  # noqa: E731
    assert same(other) == same(result)


def _only_model(score):
    def guarded(cfg, task, method, *args, **kwargs):
        if method != "model":
            raise AssertionError(f"{method} scored again although its records are cached")
        return score(cfg, task, method, *args, **kwargs)
    return guarded


def test_build_shared_skips_entries_another_run_holds_then_waits_for_them(tmp_path):
    cfg = tiny_cfg()
    run_dir = tmp_path / "run"
    prepared = []
    for name in cfg.eval.tasks:
        real = TASKS.build(name).prepare(evaluate.eval_clips(cfg))
        prepared.append((name, real, TASKS.build(name).eval_mask(real.shape[1]).expand(len(real), -1).clone()))
    task, real, mask = prepared[0]
    fake = evaluate.generate(baselines.copy_nearest, real, mask, 8)
    held = tmp_path / evaluate.BASELINE_DIR / evaluate.baseline_key(cfg, task, fake)
    built = lambda: sorted(p.parent.name for p in (tmp_path / evaluate.BASELINE_DIR).glob("*/records.json"))  # noqa: E731
    with evaluate.shared_entry(held):  # "another run" is building this entry
        worker = threading.Thread(target=evaluate.build_shared, args=(cfg, prepared, run_dir))
        worker.start()
        deadline = time.monotonic() + 60
        while len(built()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(built()) == 2 and held.name not in built() and worker.is_alive()  # the rest, then waits
    worker.join(60)
    assert not worker.is_alive() and held.name in built()


def test_shared_entry_makes_a_second_run_wait(tmp_path):
    """Concurrent runs of a sweep build a shared entry once: the second blocks until the first is done."""
    order = []
    with evaluate.shared_entry(tmp_path / "entry"):
        waiter = threading.Thread(target=lambda: evaluate.shared_entry(tmp_path / "entry").__enter__() and order.append("second"))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # blocked on the flock
        with evaluate.shared_entry(tmp_path / "entry", block=False) as folder:
            assert folder is None  # a run that need not wait moves on to other work
        order.append("first")
    waiter.join(5)
    assert order == ["first", "second"]


def test_eval_clips_depend_on_data_and_eval_seed_only():
    a = evaluate.eval_clips(tiny_cfg())
    assert torch.equal(a, evaluate.eval_clips(tiny_cfg("seed=5", "train.steps=9")))
    assert not torch.equal(a, evaluate.eval_clips(tiny_cfg("eval.seed=1")))


def test_result_json_is_the_last_file_written(tmp_path):
    one_run.run(tiny_cfg("eval.tasks=[interpolation]", "eval.baselines=[]"), tmp_path / "r")
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == "result.json" and not [p for p in files if p.name.endswith(".tmp")]


def _sweep_point(root: Path, cfg: RunConfig) -> Path:
    """A run folder as the sweep writes it: named by the config hash, holding config.json."""
    run_dir = root / config_hash(cfg)
    write_json(run_dir / CONFIG, to_dict(cfg))
    return run_dir


def test_a_point_differing_only_in_sampling_reuses_its_siblings_training(tmp_path):
    base = tiny_cfg("eval.baselines=[]", "eval.tasks=[interpolation]")
    first = _sweep_point(tmp_path, base)
    one_run.run(base, first)
    steps = _sweep_point(tmp_path, apply_overrides(base, ["model.diffusion.sample_steps=1", "eval.num_videos=2"]))
    result = one_run.run(apply_overrides(base, ["model.diffusion.sample_steps=1", "eval.num_videos=2"]), steps)
    assert result["train"]["trained_in"] == first.name and result["status"] == "DONE"
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (first, steps))
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert b["config"]["model"]["diffusion"]["sample_steps"] == 1
    other = apply_overrides(base, ["train.lr=0.01"])  # trains something else: no reuse
    assert "trained_in" not in one_run.run(other, _sweep_point(tmp_path, other))["train"]


def test_run_takes_its_thread_count_from_the_environment(tmp_path, monkeypatch):
    # A local sweep shares the cores through the environment; a run must not grab them all again.
    monkeypatch.setenv("MARDINI_BENCH_THREADS", "1")
    torch.set_num_threads(2)
    result = one_run.run(tiny_cfg("eval.tasks=[interpolation]", "eval.baselines=[]"), tmp_path / "r")
    assert torch.get_num_threads() == 1 and result["train"]["threads"] == 1


def test_missing_weights_fail_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("MARDINI_BENCH_WEIGHTS", raising=False)  # nothing to fall back on
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = tiny_cfg("eval.metrics=[fvd]", f"eval.weights={tmp_path / 'missing'}", "eval.baselines=[]")
    with pytest.raises(WeightsError, match="i3d_kinetics400_tfhub.pt"):
        one_run.run(cfg, tmp_path / "r")
    assert not (tmp_path / "r").exists()  # no training run was spent on it


def test_a_run_that_raises_leaves_no_result(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(one_run, "evaluate", broken)
    cfg = tiny_cfg("eval.metrics=[psnr]", "eval.baselines=[]")
    with pytest.raises(RuntimeError, match="evaluation broke"):
        one_run.run(cfg, tmp_path / "r")
    assert (tmp_path / "r" / "last.pt").exists() and not (tmp_path / "r" / "result.json").exists()


def test_frechet_records_save_features_for_the_bootstrap(tmp_path, weights_dir, monkeypatch):
    cfg = tiny_cfg("data.frames=9", "eval.tasks=[interpolation]", "eval.metrics=[fvd,fid]", "eval.num_videos=2",
                   "eval.protocol=middle_frame", "eval.baselines=[]", f"eval.weights={weights_dir}")
    result = one_run.run(cfg, tmp_path / "r")
    for rec in result["records"]:
        feats = np.load(tmp_path / "r" / rec["features"])
        dim = 400 if rec["metric"] == "fvd" else 2048
        assert feats["fake"].shape == feats["real"].shape == (2, dim)  # FID: the middle frame of each clip
        assert feats["video_index"].tolist() == [0, 1] and rec["per_video"] is None
        assert rec["protocol"]["trace_sqrt"] == "lowrank"  # 2 videos: exact N x N route, no d x d sqrtm
    fvd, fid = result["records"]
    assert fvd["protocol"]["frame_protocol"] == "whole_clip" and fvd["protocol"]["frames"] == 9
    assert fid["protocol"]["scored_frames"] == [4] and fid["protocol"]["frame_protocol"] == "middle_frame"
    assert fid["protocol"]["input_resolution_real"] == [16, 16]

    # Another run of the sweep reads the real clips' features instead of running the networks on them.
    def no_real_pass(self, label, batch):
        assert label == "fake", "real features computed again although the sweep has them"
        return real_update(self, label, batch)
    real_update = FrechetMetric._update
    monkeypatch.setattr(FrechetMetric, "_update", no_real_pass)
    other = one_run.run(apply_overrides(cfg, ["seed=1"]), tmp_path / "r2")
    for a, b in zip(result["records"], other["records"]):
        np.testing.assert_array_equal(np.load(tmp_path / "r" / a["features"])["real"],
                                      np.load(tmp_path / "r2" / b["features"])["real"])
        assert {k: v for k, v in a["protocol"].items() if k != "num_fake"} == \
            {k: v for k, v in b["protocol"].items() if k != "num_fake"}


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("train.stpes=3", "train.steps"),
    ("eval.tasks=[interpolaton]", "interpolation"),
    ("eval.protocol=middle", "all_frames, middle_frame"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, override, message):
    with pytest.raises(SystemExit) as exit_info:
        one_run.main([str(tmp_path / "r"), "model=tiny", override])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r" / "last.pt").exists()


def test_cli_runs_one_config(tmp_path, capsys):
    one_run.main([str(tmp_path / "r")] + TINY + ["eval.tasks=[interpolation]", "eval.baselines=[]"])
    assert "interpolation" in capsys.readouterr().out
    assert Path(tmp_path / "r" / "result.json").exists()


# ----------------------------------------------------------------------------------------------
# A diverging run fails, never DONE with a NaN
# ----------------------------------------------------------------------------------------------
DIVERGE = ["train.lr=1e12", "train.grad_clip=0", "train.warmup_steps=0"]


def test_diverging_run_is_recorded_failed_with_its_step(tmp_path):
    from mardini_bench.config import to_dict
    from mardini_bench.run.train import NonFiniteError
    from mardini_bench.sweep import rundir
    from mardini_bench.sweep.job import RunJob

    run_dir = tmp_path / "r"
    rundir.write_json(run_dir / rundir.CONFIG, to_dict(tiny_cfg(*DIVERGE)))
    with pytest.raises(NonFiniteError):
        RunJob(run_dir)()
    state, detail = rundir.run_state(run_dir)
    assert state == "FAILED" and detail.startswith("NonFiniteError: step ") and "last finite loss" in detail
    assert not (run_dir / rundir.RESULT).exists()


def test_cli_diverging_run_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        one_run.main([str(tmp_path / "r")] + TINY + DIVERGE)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: step ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "result.json").exists()
