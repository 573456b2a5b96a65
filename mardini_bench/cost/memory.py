"""Training memory per GPU under DDP or FSDP, before a single GPU is rented.

    python -m mardini_bench.cost memory mardini_l_st --gpus 8 --parallel fsdp
    python -m mardini_bench.cost memory mardini_s_st --gpus 16 --parallel fsdp --micro-batch 4 --activation-checkpointing

What a training process holds (mixed precision as the trainer runs it: fp32 master weights, bf16 compute):

    weights       fp32 master weights: all of them (ddp) or 1/N (fsdp)
    gathered      fsdp: the bf16 copies of the units being all-gathered, the running block and the
                  prefetched next one (the largest two units bound it)
    gradients     fp32, full size (ddp) or a 1/N shard plus one unit's unsharded gradients in flight (fsdp)
    adamw         the two fp32 moments: 8 bytes per parameter, all (ddp) or 1/N (fsdp)
    ema           the trainer's fp32 EMA copy (train.ema_decay > 0), sharded like the weights
    activations   measured, not modelled: one micro-batch's forward and backward run on the meta device
                  while a `LiveTensorBytes` dispatch mode tracks the peak of live tensors. Each parameter
                  gradient is dropped as soon as it is accumulated, so the peak is the activations, what
                  autograd saves for backward and the largest transient. The trace runs in fp32 and is
                  halved for bf16 compute: every saved tensor is a matmul, attention or norm output in
                  the compute dtype (the few fp32 scalars per frame are negligible). Attention is traced
                  as a fused kernel (flash / memory-efficient: q, k, v, output and a log-sum-exp per row
                  kept, never the L x L scores). With activation checkpointing the same trace sees only
                  block inputs plus one block recomputed.

Allocator fragmentation, communication buffers and the CUDA context (typically 1-3 GB) are not counted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import CostError, LiveTensorBytes, train_step_fn
from mardini_bench.cost.table3 import fused_attention
from mardini_bench.factory import build_model

PARALLEL = ("ddp", "fsdp")
COMPONENTS = ("weights", "gathered", "gradients", "adamw", "ema", "activations")
FP32, BF16 = 4, 2
IN_FLIGHT_UNITS = 2  # FSDP2 gathers the next block while the current one runs


def fsdp_units(model: nn.Module) -> List[int]:
    """Trainable parameters of each unit `run/fsdp.py` shards: every block, then each network's remainder."""
    units = []
    for net in (model.planner, model.generator):
        if net is None:
            continue
        blocks = [sum(p.numel() for p in b.parameters()) for b in net.blocks]
        total = sum(p.numel() for p in net.parameters() if p.requires_grad)
        units += blocks + [total - sum(blocks)]
    return units


def activation_bytes(cfg: RunConfig, micro_batch: int, checkpointing: bool) -> int:
    """Peak bytes of one micro-batch's forward + backward in bf16 (an fp32 trace on meta, halved),
    gradients dropped as they land."""
    model = build_model(cfg, device="meta")
    model.set_stage("joint")
    model.train()
    model.set_grad_checkpointing(checkpointing)
    for p in model.parameters():
        if p.requires_grad:  # FSDP reduce-scatters and frees each unit's gradients; count none of them here
            p.register_post_accumulate_grad_hook(lambda param: setattr(param, "grad", None))
    step = train_step_fn(model, cfg, batch=micro_batch)
    with fused_attention(), LiveTensorBytes() as tracker:  # GPUs train with a fused kernel: no (L, L) scores
        step()
    return tracker.peak * BF16 // FP32


def estimate(preset: str, gpus: int, parallel: str, micro_batch: Optional[int] = None,
             checkpointing: bool = False, overrides: List[str] = ()) -> Dict[str, object]:
    """Per-GPU bytes of each of COMPONENTS (and `total`) for `preset` trained on `gpus` processes."""
    if parallel not in PARALLEL:
        raise CostError(f"--parallel: {parallel!r} is not one of {', '.join(PARALLEL)}")
    if gpus < 1:
        raise CostError(f"--gpus: got {gpus}, must be >= 1")
    cfg = apply_overrides(RunConfig(), [f"model={preset}", *overrides])
    share = cfg.train.batch_size // gpus
    if share < 1 or cfg.train.batch_size % gpus:
        raise CostError(f"train.batch_size={cfg.train.batch_size} does not split over {gpus} GPUs")
    micro = micro_batch or share
    if micro < 1 or share % micro:
        raise CostError(f"--micro-batch: {micro} does not divide the {share} clips each GPU gets per step")
    cfg = replace(cfg, train=replace(cfg.train, micro_batch=micro, parallel=parallel,
                                     activation_checkpointing=checkpointing))
    units = fsdp_units(build_model(cfg, device="meta"))
    params = sum(units)
    shard = 1 / gpus if parallel == "fsdp" else 1.0
    largest = sorted(units)[-IN_FLIGHT_UNITS:]
    out: Dict[str, object] = {
        "weights": FP32 * params * shard,
        "gathered": BF16 * sum(largest) if parallel == "fsdp" else 0,
        "gradients": FP32 * params * shard + (BF16 * largest[-1] if parallel == "fsdp" else 0),
        "adamw": 2 * FP32 * params * shard,
        "ema": FP32 * params * shard if cfg.train.ema_decay > 0 else 0,
        "activations": activation_bytes(cfg, micro, checkpointing),
    }
    out = {k: int(v) for k, v in out.items()}
    out["total"] = sum(out[k] for k in COMPONENTS)
    out.update(preset=preset, gpus=gpus, parallel=parallel, params=params, batch=cfg.train.batch_size,
               micro_batch=micro, activation_checkpointing=checkpointing, frames=cfg.data.frames,
               resolution=cfg.data.resolution)
    return out


def format_estimate(row: Dict[str, object]) -> str:
    gb = lambda n: f"{n / 2 ** 30:8.1f} GiB"  # noqa: E731
    head = (f"{row['preset']} ({row['params'] / 1e9:.2f}B trainable), {row['parallel']} on {row['gpus']} GPU(s): "
            f"batch {row['batch']} = {row['batch'] // row['gpus']} clips per GPU in micro-batches of "
            f"{row['micro_batch']}, {row['frames']} frames at {row['resolution']}px, activation checkpointing "
            f"{'on' if row['activation_checkpointing'] else 'off'}")
    lines = [head] + [f"  {name:<12}{gb(row[name])}" for name in COMPONENTS] + [f"  {'total':<12}{gb(row['total'])}"]
    return "\n".join(lines)
