"""Sampling latency vs DDIM steps for one video, with each step count's ratio to the first.

    python benchmarks/bench_sampling.py                         # small preset, 1 2 5 10 25 steps
    python benchmarks/bench_sampling.py --preset tiny --steps 1 5 model.diffusion.cfg_scale=2.5

Latency should grow as planner + steps x generator: the fitted per-step cost and the planner's
share are printed beside the measurements, with FLOPs from the same configs.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import torch

from mardini_bench.args import add_overrides, add_threads, script_parser
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import count_flops, best_latency, sample_fn
from mardini_bench.runtime import configure_threads
from mardini_bench.factory import build_model


def with_steps(cfg: RunConfig, steps: int) -> RunConfig:
    diffusion = dataclasses.replace(cfg.model.diffusion, sample_steps=steps)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, diffusion=diffusion))


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10, 25])
    ap.add_argument("--repeats", type=int, default=3)
    add_threads(ap)
    add_overrides(ap, help="dotted overrides, e.g. model.diffusion.cfg_scale=2.5")
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    cfg = apply_overrides(RunConfig(), [f"model={args.preset}", *args.overrides])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    rows = []
    for steps in args.steps:
        fn = sample_fn(model, with_steps(cfg, steps))
        rows.append((steps, best_latency(fn, args.repeats), count_flops(fn)))
    print(f"{args.preset}: 1 video, {cfg.data.frames} frames x {cfg.data.resolution}^2, "
          f"cfg_scale {cfg.model.diffusion.cfg_scale}, {threads} threads")
    print(f"{'steps':>5} {'latency s':>10} {'x first':>8} {'GFLOP':>8} {'x first':>8} {'GFLOP/s':>8}")
    for steps, sec, flops in rows:
        print(f"{steps:>5} {sec:>10.3f} {sec / rows[0][1]:>8.2f} {flops / 1e9:>8.2f} {flops / rows[0][2]:>8.2f} "
              f"{flops / sec / 1e9:>8.1f}")
    (s0, t0, _), (s1, t1, _) = rows[0], rows[-1]
    if s1 > s0:
        per_step = (t1 - t0) / (s1 - s0)
        print(f"fit: {per_step * 1e3:.1f} ms per DDIM step, {max(t0 - s0 * per_step, 0) * 1e3:.1f} ms once "
              f"(planner, inputs)")


if __name__ == "__main__":
    main()
