"""Training-step throughput and MFU of a preset against the fp32 matmul peak measured in this process.

    python benchmarks/bench_train.py                       # small preset, batch 8, 9 x 32 x 32
    python benchmarks/bench_train.py --preset tiny --steps 10 model.generator.depth=4
    python benchmarks/bench_train.py --compile             # torch.compile the loss (train.compile=true)

MFU = (FlopCounterMode FLOPs of forward + backward) / step time / peak, where the peak is the best
2048² fp32 matmul measured before and after the steps (the better of the two). The step includes
the AdamW update, which FLOP counters do not count, so MFU is a lower bound. Target: >= 40 %.
"""

from __future__ import annotations

import statistics
import time
from typing import List, Optional

import torch

from mardini_bench.args import add_overrides, add_threads, script_parser
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import count_flops, train_step_fn
from mardini_bench.cost.perf import matmul_peak_flops
from mardini_bench.runtime import configure_threads
from mardini_bench.factory import build_model


def step_times(model, cfg: RunConfig, steps: int, warmup: int = 1) -> list:
    """Wall seconds of `steps` full training steps (forward, backward, AdamW) after `warmup` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    fwd_bwd = train_step_fn(model, cfg, keep_grads=True)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        fwd_bwd()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:  # warm-up: allocator, thread pool, and compilation when compiled
            times.append(time.perf_counter() - start)
    return times


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=10)
    add_threads(ap)
    ap.add_argument("--compile", action="store_true", help="torch.compile the latent loss (train.compile=true compiles it with the codec in front)")
    add_overrides(ap, help="dotted overrides, e.g. train.batch_size=16")
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    cfg = apply_overrides(RunConfig(), [f"model={args.preset}", *args.overrides])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    flops = count_flops(train_step_fn(model, cfg))  # eager: FlopCounterMode does not see inside compiled code
    if args.compile:
        model.latent_losses = torch.compile(model.latent_losses)  # the step calls it; the first call compiles
    peak_before = matmul_peak_flops()
    compile_start = time.perf_counter()
    times = step_times(model, cfg, args.steps, warmup=3 if args.compile else 1)
    warmup_s = time.perf_counter() - compile_start - sum(times)
    peak = max(peak_before, matmul_peak_flops())
    step_s = statistics.median(times)
    d = cfg.data
    mode = "torch.compile" if args.compile else "eager"
    print(f"{args.preset}: batch {cfg.train.batch_size} x {d.frames} frames x {d.resolution}^2, {threads} threads, {mode}")
    if args.compile:
        print(f"  warm-up incl. compile  {warmup_s:8.1f} s")
    print(f"  FLOPs/step (fwd+bwd)   {flops / 1e9:8.2f} GFLOP")
    print(f"  step time (median {args.steps})  {step_s * 1e3:8.1f} ms   ({cfg.train.batch_size / step_s:.1f} clips/s)")
    print(f"  achieved               {flops / step_s / 1e9:8.1f} GFLOP/s")
    print(f"  fp32 matmul peak 2048^2 {peak / 1e9:7.1f} GFLOP/s")
    print(f"  MFU                    {flops / step_s / peak:8.1%}   (target >= 40%)")


if __name__ == "__main__":
    main()
