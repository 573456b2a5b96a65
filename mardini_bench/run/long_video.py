"""Long videos from a finished run (paper §3.2, Fig. 11): clips several times longer than the model's
window, scored by FVD beside repeating the last given frame.

    python -m mardini_bench.run.long_video RUN_DIR --frames 36 --clips 32

The run's model (the EMA weights of `last.pt`, under the config it was trained with) gets the key
frames of `--clips` held-out clips of its data config rendered at `--frames` (the `val` split, picked
by `--seed` as `eval_clips` picks them): the real frames at the `plan_long` key-frame positions, frame
0 alone by default. `tasks.generate_long` fills in the rest with K-frame windows: expansion on a coarse
grid, then recursive interpolation. The baseline repeats the last given key frame (a still clip when
there is one key frame). FVD compares each with the real clips of the same length, with a bootstrap
interval, and a paired bootstrap over clips tests the difference. Written into RUN_DIR/long_video/,
the JSON last (its presence means the rest is whole):

    long_video.gif, long_video.mp4   the first clips, real | generated side by side (green border = given
                                     key frame, red = generated); the MP4 needs PyAV
    samples.npz                      those clips as uint8 arrays (`evaluate.save_samples`' form)
    <method>_fvd.npz                 I3D features of the real and generated clips (the bootstrap's evidence)
    long_video.json                  {run_id, protocol, records: [{method, metric, value, ci, protocol}],
                                      comparison}
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from mardini_bench.args import Command, command_main
from mardini_bench.cli import user_errors
from mardini_bench.config import RunConfig, to_dict
from mardini_bench.runtime import Runtime
from mardini_bench.data.synthetic import NOMINAL_FPS
from mardini_bench.io import write_json
from mardini_bench.metrics.bootstrap import frechet_scorer, paired_bootstrap
from mardini_bench.metrics.i3d import MIN_FRAMES
from mardini_bench.registry import METRICS
from mardini_bench.run.evaluate import eval_clips, model_sampler, save_npz, save_samples, task_seed
from mardini_bench.run.fsdp import CHECKPOINT as DCP_CHECKPOINT
from mardini_bench.run.samples import load_samples, sample_gif, sample_mp4
from mardini_bench.run.train import CHECKPOINT, load_trained, trained_checkpoint
from tasks import generate_long, plan_long

FOLDER, RESULT, SAMPLES = "long_video", "long_video.json", "samples.npz"
GIF, MP4 = "long_video.gif", "long_video.mp4"
BASELINE = "repeat_last"
BASELINE_RULE = "frame t repeats the real frame at the last key-frame position <= t"
SHOWN = 4  # clips in the GIF and MP4
N_BOOT = 500  # bootstrap replicates for the FVD intervals and the paired test


class LongVideoError(ValueError):
    """A run folder or request the long-video demo cannot use; the message names it and what is valid."""


# ----------------------------------------------------------------------------------------------
# The run and the request
# ----------------------------------------------------------------------------------------------
def load_run(run_dir: Path) -> Tuple[RunConfig, torch.nn.Module, int]:
    """(config, EMA model, step) of a finished run; LongVideoError when the folder has no usable one."""
    if not run_dir.is_dir():
        raise LongVideoError(f"{run_dir}: no such run folder (give a run folder holding {CHECKPOINT} or {DCP_CHECKPOINT})")
    checkpoint = trained_checkpoint(run_dir)
    if not checkpoint.exists():
        raise LongVideoError(f"{checkpoint}: not found; the run has not trained yet "
                             "(finish it first: launching its sweep again resumes it)")
    cfg, model, step = load_trained(run_dir)
    if step < cfg.train.steps:
        raise LongVideoError(f"{checkpoint}: the run stopped at step {step} of train.steps="
                             f"{cfg.train.steps}; finish it first (launching its sweep again resumes it)")
    return cfg, model, step


def check_request(cfg: RunConfig, frames: int, clips: int, keyframes: int) -> None:
    """Fail in one line, before any work, on a length, clip count or key-frame count that cannot run."""
    window = cfg.data.frames
    if frames <= window or frames < MIN_FRAMES:
        raise LongVideoError(f"--frames {frames}: must be more than the model's {window} frames and at least "
                             f"{MIN_FRAMES} (FVD's I3D); e.g. --frames {max(4 * window, MIN_FRAMES)}")
    if clips < 2:
        raise LongVideoError(f"--clips {clips}: FVD needs at least 2 clips")
    if not 1 <= keyframes < frames:
        raise LongVideoError(f"--keyframes {keyframes}: valid: 1 to {frames - 1} (fewer than --frames)")


def long_config(cfg: RunConfig, frames: int, clips: int, seed: int) -> RunConfig:
    """The run's config with its clips rendered at `frames` and `clips` of them picked by `seed`
    (the synthetic split grows to hold them; a folder dataset has the clips it has)."""
    data = replace(cfg.data, frames=frames, num_eval=max(cfg.data.num_eval, clips))
    return replace(cfg, data=data, eval=replace(cfg.eval, num_videos=clips, seed=seed))


# ----------------------------------------------------------------------------------------------
# Generation and the baseline
# ----------------------------------------------------------------------------------------------
def generate_clips(model: torch.nn.Module, real: torch.Tensor, window: int, positions: List[int], seed: int,
                   batch: int) -> torch.Tensor:
    """(N, T, 3, H, W) in [0, 1]: `generate_long` from the real frames at `positions`, `batch` clips per call."""
    device = next(model.parameters()).device
    sample = model_sampler(model, task_seed(seed, FOLDER))  # one noise stream, consumed batch by batch
    out = [generate_long(sample, real[i:i + batch, positions].to(device), window, real.shape[1]).float().cpu()
           for i in range(0, len(real), batch)]
    return torch.cat(out).clamp(0, 1)


def repeat_last(real: torch.Tensor, positions: List[int]) -> torch.Tensor:
    """(N, T, 3, H, W): the baseline; frame t repeats the real frame at the last key-frame position <= t."""
    latest = torch.searchsorted(torch.tensor(positions), torch.arange(real.shape[1]), right=True) - 1
    return real[:, torch.tensor(positions)[latest]]


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def fvd_records(cfg: RunConfig, real: torch.Tensor, fakes: Dict[str, torch.Tensor], out_dir: Path,
                seed: int, runtime: Optional[Runtime] = None) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """One FVD record per method (value, bootstrap interval, protocol; features saved to
    `out_dir/<method>_fvd.npz`), and the paired bootstrap of FVD(baseline) - FVD(model). I3D runs on the
    runtime's device (default the CPU)."""
    runtime = runtime or Runtime.resolve(device="cpu")

    def metric() -> Any:
        fvd = METRICS.build("fvd", weights=cfg.eval.weights, batch_size=cfg.eval.batch_size, bootstrap=N_BOOT,
                            seed=seed, device=runtime.device)
        fvd.batch_size = runtime.batch_for(fvd.item_bytes, cfg.eval.batch_size)
        return fvd

    ref = metric()
    ref.update(real=real)
    feats, resolution = ref.real.all_features(), ref.shape["input_resolution_real"]
    records, scorers = [], {}
    for method, fake in fakes.items():
        fvd = metric()
        fvd.net = ref.net  # I3D loads once
        fvd.add_features("real", feats, frames=real.shape[1], input_resolution=resolution)
        fvd.update(fake=fake)
        result = fvd.compute()
        npz = out_dir / f"{method}_fvd.npz"
        save_npz(npz, real=feats, fake=fvd.fake.all_features())
        scorers[method] = frechet_scorer(npz, fvd.ddof)
        records.append({"method": method, "metric": "fvd", "value": result.value,
                        "ci": list(result.ci) if result.ci else None, "protocol": result.protocol,
                        "features": npz.name})
    test = paired_bootstrap([scorers["model"]], [scorers[BASELINE]], len(real), N_BOOT, np.random.default_rng(seed))
    comparison = {"a": "model", "b": BASELINE, "metric": "fvd", "delta": test["delta"], "ci_low": test["ci_low"],
                  "ci_high": test["ci_high"], "p_value": test["p_value"], "resamples": N_BOOT,
                  "method": "paired bootstrap over clips, delta = b - a"}
    return records, comparison


def write_media(out_dir: Path, real: torch.Tensor, fake: torch.Tensor, positions: List[int], fps: int) -> List[str]:
    """samples.npz and the GIF of its clips, and the MP4 when PyAV is installed (else one `warning:`
    line); returns the names of the GIF and MP4 written."""
    mask = torch.ones(real.shape[:2], dtype=torch.bool)
    mask[:, positions] = False  # the given key frames: green border
    save_samples(out_dir / SAMPLES, real, mask, fake, SHOWN)
    samples, kinds = load_samples(out_dir / SAMPLES), ("real", "output")
    sample_gif(samples, out_dir / GIF, videos=SHOWN, fps=fps, kinds=kinds)
    try:
        sample_mp4(samples, out_dir / MP4, videos=SHOWN, fps=fps, kinds=kinds)
    except ModuleNotFoundError as err:
        if err.name != "av":
            raise
        (out_dir / MP4).unlink(missing_ok=True)  # an older MP4 would not show these clips
        print(f"warning: wrote {GIF} but no {MP4}: PyAV is not installed (pip install av)", file=sys.stderr)
        return [GIF]
    return [GIF, MP4]


def verdict(comparison: Dict[str, Any]) -> str:
    """One sentence: which has the lower FVD, by how much, the interval and the p-value."""
    c = comparison
    lower = "the model" if c["delta"] > 0 else c["b"]
    p = f"p = {c['p_value']:.3g}" if c["p_value"] > 0 else f"p < {2 / c['resamples']:.2g}"  # none crossed 0
    return (f"{lower} has the lower FVD: {c['b']} - model = {c['delta']:+.1f} (95% CI {c['ci_low']:+.1f} to "
            f"{c['ci_high']:+.1f}, {p}; {c['method']}).")


# ----------------------------------------------------------------------------------------------
# The whole demo
# ----------------------------------------------------------------------------------------------
def make_long_video(run_dir: Path, frames: int, clips: int, seed: Optional[int] = None,
                    keyframes: int = 1) -> Dict[str, Any]:
    """Generate, score and write RUN_DIR/long_video/ (the JSON last); returns the JSON's content."""
    run_dir = Path(run_dir)
    cfg, model, step = load_run(run_dir)
    check_request(cfg, frames, clips, keyframes)
    METRICS.build("fvd", weights=cfg.eval.weights)  # I3D found and verified before any generation
    seed = cfg.eval.seed if seed is None else seed
    start, window = time.perf_counter(), cfg.data.frames
    long_cfg = long_config(cfg, frames, clips, seed)
    plan = plan_long(keyframes, window, frames)
    positions = list(plan.keyframe_positions)
    real = eval_clips(long_cfg)
    fakes = {"model": generate_clips(model, real, window, positions, seed, cfg.eval.batch_size),
             BASELINE: repeat_last(real, positions)}
    out_dir = run_dir / FOLDER
    (out_dir / RESULT).unlink(missing_ok=True)  # until the new one is written, the folder is not whole
    runtime = Runtime.resolve(cfg, device=next(model.parameters()).device)
    records, comparison = fvd_records(long_cfg, real, fakes, out_dir, seed, runtime)
    media = write_media(out_dir, real, fakes["model"], positions, round(cfg.data.fps or NOMINAL_FPS))
    protocol = {"frames": frames, "window": window, "keyframes": keyframes, "keyframe_positions": positions,
                "keyframe_stride": plan.stride, "sampler_calls": len(plan.steps), "clips": clips, "seed": seed,
                "split": "val", "data": to_dict(long_cfg.data), "checkpoint_step": step,
                "weights": "ema" if cfg.train.ema_decay > 0 else "model",
                "sample_steps": cfg.model.diffusion.sample_steps, "cfg_scale": cfg.model.diffusion.cfg_scale,
                "sample_average": cfg.model.diffusion.sample_average, "baseline": f"{BASELINE}: {BASELINE_RULE}"}
    result = {"run_id": run_dir.name, "protocol": protocol, "records": records, "comparison": comparison,
              "media": media, "wall_s": time.perf_counter() - start}
    write_json(out_dir / RESULT, result)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help=f"a finished run folder (holding {CHECKPOINT} or {DCP_CHECKPOINT})")
    parser.add_argument("--frames", type=int, default=36, help="frames per long clip (default 36)")
    parser.add_argument("--clips", type=int, default=32, help="held-out clips to generate and score (default 32)")
    parser.add_argument("--seed", type=int, default=None, help="picks the clips and the noise (default eval.seed)")
    parser.add_argument("--keyframes", type=int, default=1, help="real frames given at the key-frame positions "
                                                                 "(default 1: the first frame)")


@user_errors(LongVideoError)
def execute(args: argparse.Namespace) -> None:
    Runtime.resolve().configure()  # before any torch work: threads, and the device the model loads on
    result = make_long_video(args.run_dir, args.frames, args.clips, args.seed, args.keyframes)
    for rec in result["records"]:
        low, high = rec["ci"] or (float("nan"), float("nan"))
        print(f"{rec['method']:<12} FVD {rec['value']:8.1f}  (95% CI {low:.1f} to {high:.1f})")
    print(verdict(result["comparison"]))
    print(f"wrote {args.run_dir / FOLDER / RESULT} and {', '.join(result['media'])}")


COMMAND = Command(add_arguments, execute, "Long clips from a finished run's model, scored by FVD beside repeating "
                                          "the last given frame; written into RUN_DIR/long_video/.")


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m mardini_bench.run.long_video`: the `long-video` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.run.long_video")


if __name__ == "__main__":
    sys.exit(main())
