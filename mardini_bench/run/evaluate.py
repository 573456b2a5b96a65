"""Score a trained model and the baselines on every task of `cfg.eval`, one tidy record per value.

For each task: `eval.num_videos` clips of the data's `val` split (picked by `eval.seed`, so every run
with the same data config sees the same clips) go through the task's `prepare` and `eval_mask`;
the model (EMA weights) and each baseline fill the masked frames. FVD scores whole clips; FID, PSNR,
SSIM and LPIPS score the task's frames under `eval.protocol` (all generated frames, or the middle one).

A record is {task, method, metric, value, protocol, per_video, features}: PSNR/SSIM keep one value
per video, FVD/FID save real and generated features (`eval/<task>/<method>_<metric>.npz`: `real`,
`fake`, `video_index`) so the results step can bootstrap. `eval/<task>/samples.npz` keeps a few
uint8 clips for sample grids.

What does not depend on the model is computed once per sweep and shared by its runs, beside them in
`run_dir.parent`: the real clips' FVD/FID features (`_real/<key>/`) and the baselines' records
(`_baselines/<key>/`, keyed by the baseline's *output*, so two baselines that fill a task's frames
identically, like linear blending and copying when only one side has a reference, are scored once).
A sweep's runs evaluate concurrently, so each shared entry is built under an exclusive `flock` (freed
by the kernel if a job is killed): each run builds the entries no other run holds, and waits only
when all that remain are taken. This cuts the quickstart's feature passes from 72 to 19.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

import mardini_bench
from mardini_bench.config import ConfigError, RunConfig, task_sampling, to_dict, validate
from mardini_bench.data import build_dataset
from mardini_bench.io import atomic_write, exclusive_lock, load_json, write_json
from mardini_bench.metrics.info import is_distribution, metric_info
from mardini_bench.registry import BASELINES, METRICS, TASKS
from mardini_bench.runtime import Runtime
from mardini_bench.weights import WeightsError, sha256_file

BASELINE_DIR = "_baselines"
REAL_DIR = "_real"

Sampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_eval_config(cfg: RunConfig) -> None:
    """Fail before any work on what `eval` cannot score (each field's own rules: names the registries
    know, once each, a known protocol, at least one clip); a config built in code skips `apply_overrides`."""
    validate(cfg.eval, "eval.")


def check_weights(cfg: RunConfig) -> None:
    """Find and sha256-verify the feature networks of `cfg.eval.metrics` (WeightsError naming the file
    and the fix): run before training, so a missing or wrong weight file costs no training run. A
    metric whose weights are optional (LPIPS) is reported skipped instead, in one line."""
    for name in cfg.eval.metrics:
        if is_distribution(name):
            METRICS.build(name, weights=cfg.eval.weights)  # resolves and verifies; the network loads later
    usable_metrics(cfg)


_OPTIONAL_FOUND: Dict[Tuple[str, str], bool] = {}  # (metric, weights) -> usable: checked (and said) once per process


def usable_metrics(cfg: RunConfig) -> List[str]:
    """`cfg.eval.metrics` without the optional-weights metrics whose weights are absent; each one
    skipped prints one `warning:` line on stderr naming the file and where to put it. The check
    before training and the one at evaluation share one look-up."""
    usable = []
    for name in cfg.eval.metrics:
        key = (name, str(cfg.eval.weights))
        if metric_info(name).optional_weights and key not in _OPTIONAL_FOUND:
            try:
                METRICS.build(name, weights=cfg.eval.weights)
                _OPTIONAL_FOUND[key] = True
            except WeightsError as err:
                _OPTIONAL_FOUND[key] = False
                print(f"warning: {name} skipped (the run's other metrics are unaffected): {err}",
                      file=sys.stderr, flush=True)
        if _OPTIONAL_FOUND.get(key, True):
            usable.append(name)
    return usable


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


@contextlib.contextmanager
def shared_entry(folder: Path, block: bool = True) -> Iterator[Optional[Path]]:
    """Hold an exclusive flock on `folder/.lock` while building a shared entry.

    Yields the folder, or None when `block` is False and another run holds the lock."""
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder / ".lock", block) as held:
        yield folder if held else None


def spec_key(cfg: RunConfig, task: str, **extra: Any) -> str:
    """Hash of what a shared entry depends on: data, task, eval settings, code version, and `extra`."""
    ev = to_dict(cfg.eval)
    spec = {"data": to_dict(cfg.data), "task": task, "version": mardini_bench.__version__,
            "eval": {k: ev[k] for k in ("metrics", "num_videos", "seed", "protocol", "batch_size")}, **extra}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# Clips and generation
# ----------------------------------------------------------------------------------------------
def eval_clips(cfg: RunConfig) -> torch.Tensor:
    """(N, T, 3, H, W) eval clips: a prefix of a permutation of the `val` split fixed by `eval.seed`."""
    data = build_dataset(cfg.data, "val")
    if cfg.eval.num_videos > len(data):
        raise ConfigError(f"eval.num_videos={cfg.eval.num_videos} exceeds the {len(data)} clips of the val split "
                          f"(data.num_eval)")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.eval.seed))
    return torch.stack([data[int(i)] for i in order[:cfg.eval.num_videos]]).float()


def task_seed(seed: int, task: str) -> int:
    return seed * 1_000_003 + zlib.crc32(task.encode())


def generate(fn: Sampler, videos: torch.Tensor, mask: torch.Tensor, batch: int) -> torch.Tensor:
    """Run a sampler over `videos` in batches of `batch` clips, on their device; clamped to [0, 1]."""
    out = [fn(videos[i:i + batch], mask[i:i + batch]).float() for i in range(0, len(videos), batch)]
    return torch.cat(out).clamp(0, 1)


def model_sampler(model: torch.nn.Module, seed: int, task: Optional[str] = None,
                  runtime: Optional[Runtime] = None) -> Sampler:
    """`model.sample` with `task`'s sampling (`model.diffusion.task_*`); one noise stream per task on the
    run's device, consumed batch by batch (so `eval.batch_size` is part of what is sampled)."""
    runtime = runtime or Runtime.resolve(device=next(model.parameters()).device)
    gen = runtime.generator(seed)
    settings = task_sampling(model.cfg.diffusion, task)
    return lambda video, mask: model.sample(video, mask, generator=gen, **settings)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def _uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


# Feature networks already loaded, by (metric, weights file, device): one evaluation builds a metric per
# task and method, and loading I3D or Inception again each time costs seconds.
_NETS: Dict[tuple, torch.nn.Module] = {}


def build_metric(name: str, cfg: RunConfig, runtime: Optional[Runtime] = None) -> Any:
    """Metric `name` for `cfg`'s evaluation; a feature network runs on the runtime's device (default: the
    CPU), in batches as large as its free memory holds there (`eval.batch_size` on the CPU)."""
    runtime = runtime or Runtime.resolve(device="cpu")
    if is_distribution(name):
        extra = {"resize_threads": max(1, runtime.workers)} if name == "fid" else {}
        # Features are kept for the saved npz (the results step bootstraps over them).
        metric = METRICS.build(name, weights=cfg.eval.weights, batch_size=cfg.eval.batch_size, device=runtime.device,
                               keep_features=True, **extra)
        metric.batch_size = runtime.batch_for(metric.item_bytes, cfg.eval.batch_size)
        key = (name, str(metric.weights_path), str(runtime.device))
        if key not in _NETS:
            _NETS[key] = metric.net
        metric.net = _NETS[key]
        return metric
    if metric_info(name).optional_weights:
        return METRICS.build(name, weights=cfg.eval.weights)
    return METRICS.build(name)  # scores the frames its mask marks: we pass the task's scored frames


def real_features(name: str, cfg: RunConfig, task: str, real: torch.Tensor, shared_dir: Path,
                  block: bool = True, runtime: Optional[Runtime] = None) -> Optional[Tuple[np.ndarray, List[int]]]:
    """The real clips' features and input resolution for metric `name`, computed once per sweep
    (None when `block` is False and another run is computing them)."""
    metric = build_metric(name, cfg, runtime)
    key = spec_key(cfg, task, metric=name, weights=frechet_weights_id(metric))
    with shared_entry(shared_dir / REAL_DIR / key, block) as folder:
        if folder is None:
            return None
        path = folder / f"{name}.npz"
        if not path.exists():
            metric.update(real=real)  # the metric batches by its own memory-sized batch
            save_npz(path, real=metric.real.all_features(), resolution=np.array(metric.shape["input_resolution_real"]))
        with np.load(path) as data:
            return data["real"], [int(v) for v in data["resolution"]]


def frechet_weights_id(metric: Any) -> str:
    return sha256_file(metric.weights_path)


def _frechet(name: str, cfg: RunConfig, task: str, real: torch.Tensor, fake: torch.Tensor, frames: List[int],
             npz: Path, shared_dir: Path, runtime: Optional[Runtime]) -> Dict[str, Any]:
    metric = build_metric(name, cfg, runtime)
    whole = metric_info(name).whole_clips
    if not whole:  # FID pools the scored frames as images; FVD needs whole clips
        real, fake = real[:, frames], fake[:, frames]
    feats, resolution = real_features(name, cfg, task, real, shared_dir, runtime=runtime)
    metric.add_features("real", feats, frames=real.shape[1], input_resolution=resolution)
    metric.update(fake=fake)
    result = metric.compute()
    rows_per_video = 1 if whole else real.shape[1]
    save_npz(npz, real=metric.real.all_features(), fake=metric.fake.all_features(),
             video_index=np.repeat(np.arange(len(real)), rows_per_video))
    return {"value": result.value, "protocol": result.protocol, "per_video": None}


def _paired(name: str, cfg: RunConfig, real: torch.Tensor, fake: torch.Tensor, scored: torch.Tensor) -> Dict[str, Any]:
    """The mean over every clip and each clip's own value (for the bootstrap). The built-in paired
    metrics return the per-clip values from one batched `update`; a registered metric whose `update`
    returns nothing is scored once more clip by clip."""
    metric = build_metric(name, cfg)
    per_video = metric.update(real, fake, scored)
    if per_video is None:
        per_video = []
        for i in range(len(real)):
            one = build_metric(name, cfg)
            one.update(real[i:i + 1], fake[i:i + 1], scored[i:i + 1])
            per_video.append(one.compute().value)
    result = metric.compute()
    return {"value": result.value, "protocol": result.protocol, "per_video": per_video}


def score(cfg: RunConfig, task: str, method: str, real: torch.Tensor, fake: torch.Tensor,
          out_dir: Path, base_dir: Path, shared_dir: Path, runtime: Optional[Runtime] = None) -> List[Dict[str, Any]]:
    """One record per metric; feature files go to `out_dir`, named relative to `base_dir`; the real
    clips' features are shared through `shared_dir` (the sweep folder). Clips stay on their device;
    the feature networks run on the runtime's."""
    T = real.shape[1]
    frames = TASKS.build(task).scored_frames(T, cfg.eval.protocol)
    scored = torch.zeros(len(real), T, dtype=torch.bool)
    scored[:, frames] = True
    records = []
    for name in cfg.eval.metrics:
        npz = out_dir / f"{method}_{name}.npz"
        distribution = is_distribution(name)
        rec = (_frechet(name, cfg, task, real, fake, frames, npz, shared_dir, runtime) if distribution
               else _paired(name, cfg, real, fake, scored))
        rec["protocol"] = {**rec["protocol"], **_task_protocol(cfg, task, name, frames)}
        features = os.path.relpath(npz, base_dir) if distribution else None
        records.append({"task": task, "method": method, "metric": name, **rec, "features": features})
    return records


def _task_protocol(cfg: RunConfig, task: str, metric: str, frames: List[int]) -> Dict[str, Any]:
    """What the task adds to a metric's protocol: which clips and which of their frames."""
    whole = metric_info(metric).whole_clips
    return {"task": task, "frame_protocol": "whole_clip" if whole else cfg.eval.protocol,
            "scored_frames": None if whole else frames, "eval_split": "val", "eval_seed": cfg.eval.seed,
            "dataset": cfg.data.dataset}


# ----------------------------------------------------------------------------------------------
# Baselines (cached per sweep) and the whole evaluation
# ----------------------------------------------------------------------------------------------
def baseline_key(cfg: RunConfig, task: str, fake: torch.Tensor) -> str:
    """Hash of everything a baseline score depends on: data, task, eval settings, code version and
    the generated clips themselves (baselines with equal outputs share one entry)."""
    return spec_key(cfg, task, output=hashlib.sha256(_uint8(fake).tobytes()).hexdigest())


def baseline_records(cfg: RunConfig, task: str, baseline: str, real: torch.Tensor, mask: torch.Tensor,
                     run_dir: Path, block: bool = True, runtime: Optional[Runtime] = None) -> Optional[List[Dict[str, Any]]]:
    """The baseline's records, from the sweep's cache when present; feature paths relative to run_dir
    (None when `block` is False and another run is scoring the same output). The baseline fills the
    clips where they are (the run's device), all of them at once."""
    fake = generate(BASELINES.get(baseline), real, mask, len(real))
    with shared_entry(run_dir.parent / BASELINE_DIR / baseline_key(cfg, task, fake), block) as folder:
        if folder is None:
            return None
        cached = folder / "records.json"
        if cached.exists():
            records = load_json(cached, list)
        else:
            records = score(cfg, task, "baseline", real, fake, folder, folder, run_dir.parent, runtime)
            write_json(cached, records)
    return [dict(r, method=baseline, features=os.path.relpath(folder / r["features"], run_dir) if r["features"] else None)
            for r in records]


def build_shared(cfg: RunConfig, prepared: List[Tuple[str, torch.Tensor, torch.Tensor]], run_dir: Path,
                 runtime: Optional[Runtime] = None) -> None:
    """Build the sweep's shared entries: real features first, then baselines.

    The runs of a sweep reach this point together, so each takes the entries no other run is
    building and waits only when all that remain are taken: the work spreads over the runs instead
    of one run computing while the others wait on its lock."""
    todo: List[Callable[..., Any]] = []
    for task, real, _ in prepared:
        frames = TASKS.build(task).scored_frames(real.shape[1], cfg.eval.protocol)
        for name in (m for m in cfg.eval.metrics if is_distribution(m)):
            clips = real if metric_info(name).whole_clips else real[:, frames]
            todo.append(functools.partial(real_features, name, cfg, task, clips, run_dir.parent, runtime=runtime))
    for task, real, mask in prepared:
        todo += [functools.partial(baseline_records, cfg, task, name, real, mask, run_dir, runtime=runtime)
                 for name in cfg.eval.baselines]
    while todo:
        busy = [job for job in todo if job(block=False) is None]
        if busy and len(busy) == len(todo):  # every remaining entry is being built elsewhere
            busy.pop(0)(block=True)
        todo = busy


def save_samples(path: Path, real: torch.Tensor, mask: torch.Tensor, fake: torch.Tensor, count: int) -> None:
    """uint8 clips (N, T, 3, H, W): `input` (generated frames blanked), `output`, `real`; `mask` (N, T)."""
    n = min(count, len(real))
    given = real[:n] * (~mask[:n])[:, :, None, None, None]
    save_npz(path, input=_uint8(given), output=_uint8(fake[:n]), real=_uint8(real[:n]),
             mask=mask[:n].cpu().numpy().astype(np.uint8))


def evaluate(model: torch.nn.Module, cfg: RunConfig, run_dir: Path,
             runtime: Optional[Runtime] = None) -> List[Dict[str, Any]]:
    """Records for every (task, method, metric) of `cfg.eval`; methods = "model" + the baselines.

    Everything runs on the runtime's device (default: the model's): the clips are moved there once, the
    model and the baselines fill them there, and the feature networks score them there."""
    check_eval_config(cfg)
    runtime = runtime or Runtime.resolve(cfg, device=next(model.parameters()).device)
    cfg = replace(cfg, eval=replace(cfg.eval, metrics=usable_metrics(cfg)))
    run_dir, clips = Path(run_dir), runtime.to(eval_clips(cfg))
    prepared = []
    for task_name in cfg.eval.tasks:
        task = TASKS.build(task_name)
        real = task.prepare(clips)
        mask = runtime.to(task.eval_mask(real.shape[1]).expand(len(real), -1).clone())
        prepared.append((task_name, real, mask))
    build_shared(cfg, prepared, run_dir, runtime)
    records: List[Dict[str, Any]] = []
    for task_name, real, mask in prepared:
        sampler = model_sampler(model, task_seed(cfg.eval.seed, task_name), task_name, runtime)
        with runtime.autocast():
            fake = generate(sampler, real, mask, cfg.eval.batch_size)
        out_dir = run_dir / "eval" / task_name
        save_samples(out_dir / "samples.npz", real, mask, fake, cfg.eval.samples)
        records += score(cfg, task_name, "model", real, fake, out_dir, run_dir, run_dir.parent, runtime)
        for name in cfg.eval.baselines:
            records += baseline_records(cfg, task_name, name, real, mask, run_dir, runtime=runtime)
    return records


__all__ = ["evaluate", "eval_clips", "score", "baseline_key", "baseline_records", "check_eval_config", "check_weights"]
