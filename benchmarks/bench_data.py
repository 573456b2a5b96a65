"""Data throughput against what a training step consumes, at the CPU-scale training shape.

    python benchmarks/bench_data.py --real-clips DIR          # DIR: a folder of videos (or $MARDINI_BENCH_REAL_CLIPS)
    python benchmarks/bench_data.py --frames 16 --resolution 64

Prints clips/s for the synthetic dataset and for decord on the real clips (decode + crop + resize),
both in wall time and per CPU second (the second is steadier on a shared machine), and, when the
`small` model preset builds, the clips/s one training step of it consumes (forward, backward, AdamW)
and the ratio. Data is never the bottleneck when the ratio is well above 1 with one loader process.
"""

from __future__ import annotations

import os
import time
from typing import Callable, List, Optional, Tuple

import torch

from mardini_bench.args import script_parser
from mardini_bench.config import DataConfig, RunConfig, apply_overrides
from mardini_bench.data import VideoFolderDataset, build_dataset

REAL_CLIPS_ENV = "MARDINI_BENCH_REAL_CLIPS"


def rate(fn: Callable[[int], object], n: int) -> Tuple[float, float]:
    """(clips per wall second, clips per CPU second) of `fn(i)` for i < n, after one warm-up call."""
    fn(0)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


def synthetic_rate(cfg: DataConfig, n: int) -> Tuple[float, float]:
    ds = build_dataset(cfg, "train")
    return rate(lambda i: ds[i % len(ds)], n)


def real_rate(cfg: DataConfig, root: str, n: int) -> Tuple[float, float, int]:
    ds = VideoFolderDataset(cfg, root, on_error="skip")
    wall, cpu = rate(lambda i: ds[i % len(ds)], n)
    return wall, cpu, len(ds)


def model_rate(cfg: RunConfig, steps: int) -> Optional[float]:
    """Clips/s one training step of `cfg.model` consumes, or None when the model cannot be built."""
    try:
        from mardini_bench.cost import train_step_fn
        from mardini_bench.factory import build_model
    except ImportError as err:
        print(f"model comparison skipped: {err}")
        return None
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    fwd_bwd = train_step_fn(model, cfg, keep_grads=True)

    def step(_: int) -> None:
        fwd_bwd()
        opt.step()
        opt.zero_grad(set_to_none=True)

    steps_per_s, _ = rate(step, steps)
    return steps_per_s * cfg.train.batch_size


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--clips", type=int, default=500, help="synthetic clips to time")
    ap.add_argument("--real-clips", default=os.environ.get(REAL_CLIPS_ENV),
                    help=f"folder of videos (default ${REAL_CLIPS_ENV})")
    ap.add_argument("--real-reads", type=int, default=44, help="real clips to decode")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)
    data = DataConfig(frames=args.frames, resolution=args.resolution)
    shape = f"{args.frames} x {args.resolution}x{args.resolution}"
    syn_wall, syn_cpu = synthetic_rate(data, args.clips)
    print(f"synthetic ({shape}, difficulty {data.difficulty}): {syn_wall:8.0f} clips/s wall  "
          f"{syn_cpu:8.0f} clips/CPU-s")
    if args.real_clips:
        real_wall, real_cpu, files = real_rate(data, args.real_clips, args.real_reads)
        print(f"decord real clips ({files} files, {shape}):   {real_wall:8.1f} clips/s wall  "
              f"{real_cpu:8.1f} clips/CPU-s")
    else:
        print(f"decord real clips: skipped (pass --real-clips DIR or set ${REAL_CLIPS_ENV})")
    cfg = apply_overrides(RunConfig(), [f"model={args.preset}", f"data.frames={args.frames}",
                                        f"data.resolution={args.resolution}"])
    consumed = model_rate(cfg, args.steps)
    if consumed is None:
        print("comparison with the training step needs the model")
        return
    print(f"training step ({args.preset}, batch {cfg.train.batch_size}, {torch.get_num_threads()} threads): "
          f"{consumed:8.1f} clips/s consumed")
    print(f"ratio synthetic / consumed: {syn_wall / consumed:8.1f}x")
    if args.real_clips:
        print(f"ratio decord / consumed:    {real_wall / consumed:8.1f}x")


if __name__ == "__main__":
    main()
