"""A paper-width training step on one GPU: bf16 MFU, and peak memory beside `cost memory`'s estimate.

    python benchmarks/bench_paper_scale.py                                # mardini_s_st width, 2+2 blocks, 256², 9 frames
    python benchmarks/bench_paper_scale.py --micro-batch 4 --activation-checkpointing
    python benchmarks/bench_paper_scale.py --device cpu model.planner.dim=256 model.planner.mlp_dim=256 \\
        model.planner.heads=4 model.generator.dim=128 model.generator.mlp_dim=256 --resolution 64   # smoke run

MarDini-S's widths (planner 4096, generator 1024) with fewer blocks, so one GPU holds the whole model
as one FSDP shard would hold its share: fp32 master weights and AdamW state, bf16 autocast compute
(what `train.precision=auto` does on CUDA), a fused attention kernel. MFU = FlopCounterMode FLOPs of
forward + backward / step time / the best bf16 8192² matmul measured in this process. Memory: CUDA max
allocated over the timed steps, beside `python -m mardini_bench.cost memory` for the same model on one
process (weights + gradients + AdamW + activations; no EMA here).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import count_flops, train_step_fn
from mardini_bench.cost.memory import estimate
from mardini_bench.cost.perf import matmul_peak_flops
from mardini_bench.factory import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mardini_s_st")
    ap.add_argument("--blocks", type=int, default=2, help="planner and generator depth (the paper's: 8 and 8)")
    ap.add_argument("--micro-batch", type=int, default=1, help="clips per step")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.planner.dim=2048")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    overrides = [f"model.planner.depth={args.blocks}", f"model.generator.depth={args.blocks}",
                 f"data.resolution={args.resolution}", f"data.frames={args.frames}",
                 f"train.batch_size={args.micro_batch}", *args.overrides]
    cfg = apply_overrides(RunConfig(), [f"model={args.preset}", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg, device=device).train()
    model.set_grad_checkpointing(args.activation_checkpointing)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    fwd_bwd = train_step_fn(model, cfg, keep_grads=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def step() -> None:
        with autocast:
            fwd_bwd()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with autocast:
        flops = count_flops(train_step_fn(model, cfg))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step()  # warm-up: kernels, allocator, AdamW state
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    peak_dtype = torch.bfloat16 if cuda else torch.float32
    peak = matmul_peak_flops(8192 if cuda else 2048, device=str(device), dtype=peak_dtype)
    est = estimate(args.preset, 1, "ddp", args.micro_batch, args.activation_checkpointing, overrides)
    est_bytes = sum(est[k] for k in ("weights", "gradients", "adamw", "activations"))

    print(f"{args.preset} widths, {args.blocks}+{args.blocks} blocks ({est['params'] / 1e6:,.0f}M trainable), "
          f"{args.micro_batch} clip(s) x {args.frames} frames x {args.resolution}², {device}, "
          f"{'bf16 autocast' if cuda else 'fp32'}, activation checkpointing "
          f"{'on' if args.activation_checkpointing else 'off'}")
    print(f"  FLOPs/step (fwd+bwd)   {flops / 1e12:8.2f} TFLOP")
    print(f"  step time (median {args.steps})  {step_s * 1e3:8.1f} ms")
    print(f"  achieved               {flops / step_s / 1e12:8.1f} TFLOP/s")
    print(f"  {'bf16' if cuda else 'fp32'} matmul peak      {peak / 1e12:8.1f} TFLOP/s")
    print(f"  MFU                    {flops / step_s / peak:8.1%}")
    if cuda:
        measured = torch.cuda.max_memory_allocated(device)
        print(f"  peak memory measured   {measured / 2 ** 30:8.2f} GiB")
        print(f"  estimate (cost memory) {est_bytes / 2 ** 30:8.2f} GiB   measured / estimate = {measured / est_bytes:.2f}")
    else:
        print(f"  estimate (cost memory) {est_bytes / 2 ** 30:8.2f} GiB   (no measured peak off CUDA)")


if __name__ == "__main__":
    main()
