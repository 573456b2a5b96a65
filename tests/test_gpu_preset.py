"""The `gpu` preset is the paper's method with none of the CPU workarounds, its grids plan what the claims
need, and a shrunken copy trains, samples with the paper's sampler and scores on CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mardini_bench.config import RunConfig, apply_overrides, task_sampling
from mardini_bench.factory import build_model
from mardini_bench.sweep.grid import load_grid
from mardini_bench.sweep.launch import training_siblings
from mardini_bench.sweep.plan import resolve

REPO = Path(__file__).resolve().parents[1]
TASKS = ("interpolation", "image_to_video", "expansion")
# what a CPU can run in seconds: the preset's structure and sampler, at widths and sizes of a few thousand
# parameters and a handful of clips
TINY = ["model.planner.depth=1", "model.planner.dim=32", "model.planner.mlp_dim=32", "model.planner.heads=1",
        "model.generator.depth=1", "model.generator.dim=24", "model.generator.mlp_dim=48",
        "model.generator.heads=1", "train.steps=4", "train.batch_size=2", "train.warmup_steps=1",
        "train.compile=false", "data.num_train=8", "data.num_eval=2", "eval.num_videos=2", "eval.batch_size=2",
        "eval.metrics=[psnr,ssim]"]


def test_the_gpu_preset_is_the_papers_method_without_the_cpu_workarounds():
    cfg = apply_overrides(RunConfig(), ["model=gpu"])
    model, diffusion = cfg.model, cfg.model.diffusion
    assert diffusion.prior == "none" and model.generator.ref_channels == "none"  # references: the paper's paths
    assert diffusion.train_timesteps == 1000 and diffusion.sample_steps == 25 and diffusion.sample_average == 1
    assert model.generator.head == "linear" and diffusion.loss_weight == "uniform" and model.planner.recon_weight == 0
    guidance = {task: task_sampling(diffusion, task)["cfg_scale"] for task in TASKS}
    assert guidance == {"interpolation": 1.0, "image_to_video": 2.5, "expansion": 2.5}
    assert {task_sampling(diffusion, task)["steps"] for task in TASKS} == {25}
    built = build_model(cfg)
    planner = sum(p.numel() for p in built.planner.parameters())
    generator = sum(p.numel() for p in built.generator.parameters())
    assert planner > 2 * generator  # the heavy planner, the light generator (Table 1: 1.3B vs 288M)
    assert cfg.train.batch_size == 64 and cfg.train.compile  # its recipe comes with model=gpu


def _points(grid: str):
    points, _ = resolve(load_grid(REPO / "ablations" / f"{grid}.toml"))
    return points


@pytest.mark.parametrize("grid", ["gpu_learning", "gpu_table2", "gpu_fig6"])
def test_the_gpu_grids_share_the_learning_grids_budget_clips_and_seeds(grid):
    points = _points(grid)
    learning = _points("gpu_learning")[0].config
    for point in points:
        cfg = point.config
        assert cfg.train == learning.train and cfg.data == learning.data and cfg.eval.num_videos == 256
        assert cfg.eval.seed == learning.eval.seed and cfg.model.diffusion.prior == "none"
    assert sorted({p.config.seed for p in points}) == [0, 1, 2]


def test_the_learning_grid_scores_every_task_against_both_baselines():
    cfg = _points("gpu_learning")[0].config
    assert set(cfg.eval.tasks) == set(TASKS) and set(cfg.eval.baselines) == {"copy_nearest", "linear_blend"}
    assert {"fvd", "psnr"} <= set(cfg.eval.metrics)


def test_table2_at_gpu_scale_has_the_four_rows():
    models = {(p.config.model.planner.name, p.config.model.generator.name, p.config.model.planner.depth)
              for p in _points("gpu_table2")}
    assert models == {("mar", "dit", 8), ("none", "dit", 8), ("mar", "none", 8), ("mar", "dit", 16)}


def test_fig6_at_gpu_scale_trains_twice_per_seed():
    """Five DDIM settings of one training (Fig. 6a) and Identity Attention off (Fig. 6c): the launcher
    runs the four later DDIM points on the first one's weights."""
    points = _points("gpu_fig6")
    dirs = [Path(p.run_id) for p in points]
    reuse = training_siblings([(d, p.config) for d, p in zip(dirs, points)])
    assert len(points) == 18 and len(reuse) == 12  # 6 trainings: 2 per seed
    steps = sorted({p.config.model.diffusion.sample_steps for p in points if p.config.model.planner.identity_attention})
    assert steps == [1, 10, 25, 50, 100]


def test_a_shrunken_gpu_preset_trains_and_scores_every_task_on_cpu(tmp_path, one_thread):
    """The learning-curve benchmark on the preset's structure and sampler (25 DDIM steps, guidance per
    task): two checkpoints scored beside the baselines, the rows and the curve written as it goes."""
    spec = importlib.util.spec_from_file_location("bench_learning", REPO / "benchmarks" / "bench_learning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--presets", "gpu", "--points", "2", "--out", str(tmp_path), *TINY])
    rows = [json.loads(line) for line in (tmp_path / "learning.jsonl").read_text().splitlines()]
    assert [(r["step"], r["task"]) for r in rows] == [(s, t) for s in (2, 4) for t in TASKS]
    for row in rows:
        assert all(row[f"{m}/{k}"] == row[f"{m}/{k}"] for m in ("psnr", "ssim")  # no NaN
                   for k in ("model", "copy_nearest", "linear_blend"))
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    assert all((tmp_path / "gpu" / "step_000004" / "eval" / task / "samples.npz").is_file() for task in TASKS)
