"""Fabricated sweep folders in the runner's result.json schema, for results/report tests.

Values are consistent with their evidence: FVD/FID are the Frechet distances of the saved
features and PSNR/SSIM are the means of `per_video`, so significance tests can check both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple

import numpy as np

from mardini_bench.metrics.frechet import frechet_distance, gaussian_stats

TASKS = ("interpolation", "image_to_video")
METRICS = ("fvd", "fid", "psnr", "ssim")
BASELINE_QUALITY = {"copy_nearest": 0.3, "linear_blend": 0.45}  # the same in every run: same clips, no model
BASELINES = tuple(BASELINE_QUALITY)
NUM_VIDEOS, FRAMES, SIZE, FEAT_DIM = 24, 9, 16, 6


def protocol(metric: str, **changes) -> Dict:
    base = {"implementation": "mardini_bench.metrics/i3d" if metric == "fvd" else f"torchmetrics/{metric}",
            "weights_sha256": "3f1c0ffee" if metric in ("fvd", "fid") else None, "num_videos": NUM_VIDEOS,
            "frames": FRAMES, "resolution": SIZE, "value_range": "[0,1]", "resize": "none", "ddof": 1}
    base.update(changes)
    return base


def _fd(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def _features(rng: np.random.Generator, real: np.ndarray, shift: float) -> np.ndarray:
    scale = real.std()
    return real + scale * rng.normal(shift, 0.3 + shift, size=real.shape)


def _records(run: Path, rng: np.random.Generator, quality: float, fvd_protocol: Optional[Dict],
             baselines: Dict[str, float]) -> list:
    """One record per task x method x metric; `quality` (model) and `baselines` (method -> quality)
    in (0, 1], higher is better."""
    real_rng = np.random.default_rng(1234)  # the same eval clips in every run
    records = []
    for task in TASKS:
        # feature scales chosen so FD lands in realistic FVD (~100s) and FID (~10s) ranges
        real = 10 * real_rng.normal(size=(NUM_VIDEOS, FEAT_DIM))
        real_frames = 3 * real_rng.normal(size=(NUM_VIDEOS * FRAMES, FEAT_DIM))
        for method, q in (("model", quality), *baselines.items()):
            for metric in METRICS:
                rec = {"task": task, "method": method, "metric": metric, "per_video": None, "features": None,
                       "protocol": protocol(metric, task=task, dataset="synthetic")}
                if metric in ("fvd", "fid"):
                    ref = real if metric == "fvd" else real_frames
                    fake = _features(rng if method == "model" else np.random.default_rng(len(method)), ref, 1 - q)
                    rel = f"eval/{task}/{method}_{metric}_features.npz"
                    (run / rel).parent.mkdir(parents=True, exist_ok=True)
                    extra = {} if metric == "fvd" else {"video_index": np.repeat(np.arange(NUM_VIDEOS), FRAMES)}
                    np.savez(run / rel, real=ref, fake=fake, **extra)
                    rec.update(value=_fd(ref, fake), features=rel)
                    if metric == "fvd" and fvd_protocol is not None:
                        rec["protocol"] = dict(fvd_protocol, task=task, dataset="synthetic")
                else:
                    base, spread = (18 + 10 * q, 2.0) if metric == "psnr" else (0.4 + 0.5 * q, 0.05)
                    gen = rng if method == "model" else np.random.default_rng(7 + len(method))
                    per = gen.normal(base, spread, size=NUM_VIDEOS)
                    rec.update(value=float(per.mean()), per_video=per.tolist())
                records.append(rec)
    return records


def _config(overrides: Dict[str, object], seed: int) -> Dict:
    planner = {"name": "mar", "depth": 2, "identity_attention": True}
    generator = {"name": "dit", "depth": 2, "identity_attention": True}
    cfg = {"model": {"planner": planner, "generator": generator, "diffusion": {"sample_steps": 25}},
           "data": {"dataset": "synthetic", "frames": FRAMES, "resolution": SIZE},
           "eval": {"tasks": list(TASKS), "metrics": list(METRICS), "baselines": list(BASELINES),
                    "num_videos": NUM_VIDEOS}, "seed": seed}
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def _samples(run: Path, rng: np.random.Generator) -> None:
    for task in TASKS:
        clips = rng.integers(0, 255, size=(4, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
        mask = np.ones((4, FRAMES), dtype=np.uint8)
        mask[:, 0] = 0
        if task == "interpolation":
            mask[:, -1] = 0
        out = run / "eval" / task
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "samples.npz", input=clips, mask=mask, output=clips // 2 + 60)


def make_run(sweep: Path, overrides: Dict[str, object], seed: int, quality: float,
             fail: bool = False, fvd_protocol: Optional[Dict] = None,
             baselines: Optional[Dict[str, float]] = None) -> Path:
    """One run folder: config/overrides always; result.json + log + samples, or failed.json.

    `baselines` (method -> quality) overrides BASELINE_QUALITY, e.g. a copy_nearest hard to beat."""
    run_id = "r" + "_".join(f"{k.split('.')[-1]}{v}" for k, v in overrides.items()) + f"_s{seed}"
    run = sweep / run_id
    run.mkdir(parents=True, exist_ok=True)
    cfg = _config(overrides, seed)
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "overrides.json").write_text(json.dumps([f"{k}={v}" for k, v in overrides.items()] + [f"seed={seed}"]))
    if fail:
        (run / "failed.json").write_text(json.dumps({"type": "RuntimeError", "message": "loss is NaN at step 40",
                                                     "traceback": "Traceback ...\nRuntimeError: loss is NaN"}))
        return run
    rng = np.random.default_rng(seed * 100 + int(quality * 100))
    depth = cfg["model"]["planner"].get("depth", 2)
    steps = 60
    with open(run / "log.jsonl", "w") as f:
        for step in range(0, steps + 1, 10):
            loss = 1.0 / (1 + 0.05 * step * quality) + rng.normal(0, 0.01)
            f.write(json.dumps({"step": step, "loss": loss, "lr": 1.4e-4, "stage": "joint"}) + "\n")
    _samples(run, rng)
    cost = {"params_planner": 40_000 * depth if cfg["model"]["planner"]["name"] != "none" else 0,
            "params_generator": 30_000 if cfg["model"]["generator"]["name"] != "none" else 0,
            "flops_train_step": 2.0e8 * depth, "flops_sample": 5.0e8 * depth * cfg["model"]["diffusion"]["sample_steps"] / 25,
            "latency_sample_s": 0.05 * depth, "peak_mem_mb": 120.0 + 10 * depth}
    records = _records(run, rng, quality, fvd_protocol, dict(BASELINE_QUALITY, **(baselines or {})))
    result = {"run_id": run_id, "status": "DONE", "config": cfg, "cost": cost,
              "train": {"steps": steps, "final_loss": loss, "wall_s": 12.5}, "records": records}
    (run / "result.json").write_text(json.dumps(result))
    return run


def make_sweep(sweep: Path, axes: Iterable[Tuple[Dict[str, object], float]], seeds=(0, 1, 2),
               fail: Iterable[Tuple[int, int]] = (), baselines: Optional[Dict[str, float]] = None) -> Path:
    """A sweep of (overrides, quality) points x seeds; `fail` lists (point index, seed) that failed;
    `baselines` as in make_run."""
    failed = set(fail)
    for i, (overrides, quality) in enumerate(axes):
        for seed in seeds:
            make_run(sweep, overrides, seed, quality, fail=(i, seed) in failed, baselines=baselines)
    return sweep


def add_derived_metric(path: Path, source: str, metric: str, per_clip: Callable[[float], float],
                       **protocol_changes: object) -> None:
    """Beside each `source` record of a run's result.json, a `metric` record whose per-clip values are
    `per_clip(source value)` (so a new metric's evidence tracks a known one), listed in eval.metrics."""
    result = json.loads(path.read_text())
    extra = []
    for rec in result["records"]:
        if rec["metric"] == source:
            per_video = [per_clip(value) for value in rec["per_video"]]
            extra.append(dict(rec, metric=metric, per_video=per_video, value=sum(per_video) / len(per_video),
                              protocol=dict(rec["protocol"], **protocol_changes)))
    result["records"] += extra
    result["config"]["eval"]["metrics"].append(metric)
    path.write_text(json.dumps(result))
