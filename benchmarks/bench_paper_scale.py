"""A paper-width training step on one GPU: bf16 MFU, and peak memory beside `cost memory`'s estimate.

    python benchmarks/bench_paper_scale.py                                # mardini_s_st width, 2+2 blocks, 256², 9 frames
    python benchmarks/bench_paper_scale.py --micro-batch 4 --activation-checkpointing
    python benchmarks/bench_paper_scale.py --compile                      # torch.compile the loss
    python benchmarks/bench_paper_scale.py --device cpu model.planner.dim=256 model.planner.mlp_dim=256 \\
        model.planner.heads=4 model.generator.dim=128 model.generator.mlp_dim=256 --resolution 64   # smoke run

MarDini-S's widths (planner 4096, generator 1024) with fewer blocks, so one GPU holds the whole model
as one FSDP shard would hold its share, on the paper's latent geometry (a 16-channel, 8x latent: 32 x 32
at 256², what `cost` assumes; no codec runs). The step is the trainer's: weights, gradients and AdamW
held flat, fused AdamW, bf16 autocast compute (what `train.precision=auto` does on CUDA), fused
attention kernels. MFU = FlopCounterMode FLOPs of forward + backward / step time / the best bf16 8192²
matmul measured in this process. Memory: CUDA max allocated over the timed steps, beside
`python -m mardini_bench.cost memory` for the same model on one process (weights + gradients + AdamW
+ activations + transients; no EMA here, as the step keeps none).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import torch

from mardini_bench.args import add_device, add_overrides, script_parser
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import count_flops, train_step_fn
from mardini_bench.cost.memory import COMPONENTS, estimate
from mardini_bench.cost.perf import matmul_peak_flops
from mardini_bench.factory import build_model
from mardini_bench.run.optim import FlatAdamW, FlatParameters
from mardini_bench.runtime import Runtime


def paper_step(runtime: Runtime, preset: str = "mardini_s_st", blocks: int = 2, micro_batch: int = 1,
               resolution: int = 256, frames: int = 9, checkpointing: bool = False, compile_loss: bool = False,
               steps: int = 10, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """Time `steps` training steps of the preset's widths with `blocks` planner and generator blocks.

    Returns flops, step_s (median), mfu (against the measured matmul peak), peak_bytes (CUDA max
    allocated, None elsewhere), estimate_bytes (`cost memory`'s total less the EMA) and the config."""
    device = runtime.device
    cuda = runtime.is_cuda
    settings = [f"model.planner.depth={blocks}", f"model.generator.depth={blocks}", f"data.resolution={resolution}",
                f"data.frames={frames}", f"train.batch_size={micro_batch}", *overrides]
    cfg = apply_overrides(RunConfig(), [f"model={preset}", *settings])
    torch.manual_seed(0)
    model = build_model(cfg, device=device, build_codec=False).train()  # the paper's latent: 16 x 32 x 32 at 256²
    model.set_grad_checkpointing(checkpointing)
    flat = FlatParameters(model.parameters())
    opt = FlatAdamW(flat, lr=cfg.train.lr, betas=cfg.train.betas, weight_decay=cfg.train.weight_decay)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    with autocast:  # eager: FlopCounterMode does not see inside compiled code
        flops = count_flops(train_step_fn(model, cfg))
    if compile_loss:
        model.latent_losses = torch.compile(model.latent_losses)
    fwd_bwd = train_step_fn(model, cfg, keep_grads=True)  # calls model.latent_losses, compiled or not

    def step() -> None:
        flat.zero_grad()
        with autocast:
            fwd_bwd()
        norm = flat.grad_norm()
        flat.grad.mul_((cfg.train.grad_clip / (norm + 1e-6)).clamp(max=1.0))
        opt.step(skip=~torch.isfinite(norm))

    warm = time.perf_counter()
    for _ in range(2 if compile_loss else 1):  # warm-up: kernels, allocator, AdamW state, compilation
        step()
    runtime.synchronize()
    warmup_s = time.perf_counter() - warm
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times: List[float] = []
    for _ in range(steps):
        runtime.synchronize()
        start = time.perf_counter()
        step()
        runtime.synchronize()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    peak = matmul_peak_flops(8192 if cuda else 1024, device=str(device), dtype=torch.bfloat16 if cuda else torch.float32)
    est = estimate(preset, 1, "ddp", micro_batch, checkpointing, settings)
    est_bytes = est["total"] - est["ema"]
    return {"flops": flops, "step_s": step_s, "achieved": flops / step_s, "peak_flops": peak,
            "mfu": flops / step_s / peak, "warmup_s": warmup_s, "params": est["params"],
            "peak_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
            "estimate_bytes": est_bytes, "estimate": {k: est[k] for k in COMPONENTS},
            "micro_batch": micro_batch, "checkpointing": checkpointing, "compiled": compile_loss}


def report(row: Dict[str, Any], preset: str, blocks: int, resolution: int, frames: int, runtime: Runtime) -> str:
    gib = 2 ** 30
    lines = [f"{preset} widths, {blocks}+{blocks} blocks ({row['params'] / 1e6:,.0f}M trainable), {row['micro_batch']} "
             f"clip(s) x {frames} frames x {resolution}², {runtime.device}, "
             f"{'bf16 autocast' if runtime.is_cuda else 'fp32'}, activation checkpointing "
             f"{'on' if row['checkpointing'] else 'off'}{', compiled' if row['compiled'] else ''}",
             f"  FLOPs/step (fwd+bwd)   {row['flops'] / 1e12:8.2f} TFLOP",
             f"  step time (median)     {row['step_s'] * 1e3:8.1f} ms",
             f"  achieved               {row['achieved'] / 1e12:8.1f} TFLOP/s",
             f"  matmul peak            {row['peak_flops'] / 1e12:8.1f} TFLOP/s",
             f"  MFU                    {row['mfu']:8.1%}"]
    est = row["estimate_bytes"]
    if row["peak_bytes"] is not None:
        lines += [f"  peak memory measured   {row['peak_bytes'] / gib:8.2f} GiB",
                  f"  estimate (cost memory) {est / gib:8.2f} GiB   measured / estimate = {row['peak_bytes'] / est:.2f}"]
    else:
        lines += [f"  estimate (cost memory) {est / gib:8.2f} GiB   (no measured peak off CUDA)"]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--preset", default="mardini_s_st")
    ap.add_argument("--blocks", type=int, default=2, help="planner and generator depth (the paper's: 8 and 8)")
    ap.add_argument("--micro-batch", type=int, default=1, help="clips per step")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the loss")
    ap.add_argument("--steps", type=int, default=10)
    add_device(ap)
    add_overrides(ap, help="dotted overrides, e.g. model.planner.dim=2048")
    args = ap.parse_args(argv)
    runtime = Runtime.resolve(device=args.device).configure()
    row = paper_step(runtime, args.preset, args.blocks, args.micro_batch, args.resolution, args.frames,
                     args.activation_checkpointing, args.compile, args.steps, args.overrides)
    print(report(row, args.preset, args.blocks, args.resolution, args.frames, runtime))


if __name__ == "__main__":
    main()
