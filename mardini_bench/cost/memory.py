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
    activations   measured, not modelled: what autograd saves for backward (`SavedTensorBytes`) while
                  one micro-batch's forward and backward run on the meta device
    transient     the rest of that trace's peak of live tensors (`LiveTensorBytes`): the gradients of
                  activations in flight and the largest temporaries. Each parameter gradient is dropped
                  as soon as it is accumulated, so neither counts them. The trace runs under
                  `AutocastEmulation`, CUDA autocast's casting rules on meta: matmuls, attention and
                  their saved inputs in bf16 (weights cast once per forward), norms and softmax in fp32
                  (a norm saves its fp32 input), everything else in the dtype its inputs promote to.
                  Attention is traced as a fused kernel (flash / memory-efficient: q, k, v, output, a
                  log-sum-exp per row and the additive mask kept, never the L x L scores). With
                  activation checkpointing the same trace sees only block inputs plus one block
                  recomputed.

Allocator fragmentation, communication buffers and the CUDA context (typically 1-3 GB) are not counted.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import CostError, LiveTensorBytes, SavedTensorBytes, train_step_fn
from mardini_bench.cost.table3 import fused_attention
from mardini_bench.factory import build_model
from models.attention import recompute_context

PARALLEL = ("ddp", "fsdp")
COMPONENTS = ("weights", "gathered", "gradients", "adamw", "ema", "activations", "transient")
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


# CUDA autocast's op lists (torch/csrc/autograd/autocast_mode.cpp) for the functions these models call.
_LOWER = (F.linear, F.conv1d, F.conv2d, F.conv3d, F.scaled_dot_product_attention, torch.matmul, torch.mm, torch.bmm,
          torch.addmm, torch.baddbmm, torch.einsum, torch.Tensor.matmul, torch.Tensor.__matmul__)
_FP32 = (F.layer_norm, F.group_norm, F.rms_norm, F.softmax, F.log_softmax, F.mse_loss, torch.softmax,
         torch.Tensor.softmax, torch.exp, torch.Tensor.exp, torch.pow, torch.Tensor.pow, torch.Tensor.__pow__,
         torch.rsqrt, torch.Tensor.rsqrt, torch.sum, torch.Tensor.sum, torch.cumsum, torch.Tensor.cumsum)


class AutocastEmulation(TorchFunctionMode):
    """CUDA autocast's casts on any device (autocast itself acts only on CPU and CUDA tensors), so a meta
    trace saves what a bf16 step on a GPU saves: matmul-like ops cast their floating inputs to `dtype`
    (a tensor once per forward, as autocast's weight cache does), the fp32-list ops cast low-precision
    inputs to fp32, and the rest promote as torch does. Above autograd, like autocast: the casts are
    part of the graph."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.dtype = dtype
        self._lower, self._fp32 = set(_LOWER), set(_FP32)
        self._cache: Dict[int, torch.Tensor] = {}

    def _cast(self, value: Any, dtype: torch.dtype, only_low: bool) -> Any:
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()) or value.dtype == dtype:
            return value
        if only_low and value.dtype not in (torch.float16, torch.bfloat16):
            return value
        if not value.is_leaf:  # an activation: cast at every use, as autocast does
            return value.to(dtype)
        # A leaf (a weight, a per-forward mask) is cast once: autocast caches weights, and on a GPU the
        # masks are made in the compute dtype to begin with. The entry holds the tensor: ids stay unique.
        key = id(value)
        if key not in self._cache:
            self._cache[key] = (value, value.to(dtype))
        return self._cache[key][1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._lower:
            args, kwargs = tree_map(lambda v: self._cast(v, self.dtype, False), (args, kwargs))
        elif func in self._fp32:
            args, kwargs = tree_map(lambda v: self._cast(v, torch.float32, True), (args, kwargs))
        return func(*args, **kwargs)


def activation_trace(cfg: RunConfig, micro_batch: int, checkpointing: bool,
                     dtype: Optional[torch.dtype] = torch.bfloat16) -> Tuple[int, int]:
    """(peak bytes saved for backward, peak bytes of everything live) of one micro-batch's forward and
    backward computed in `dtype` (bf16: under `AutocastEmulation`; None: fp32), traced on meta with
    gradients dropped as they land."""
    model = build_model(cfg, device="meta")
    model.set_stage("joint")
    model.train()
    model.set_grad_checkpointing(checkpointing)
    for p in model.parameters():
        if p.requires_grad:  # FSDP reduce-scatters and frees each unit's gradients; count none of them here
            p.register_post_accumulate_grad_hook(lambda param: setattr(param, "grad", None))
    step = train_step_fn(model, cfg, batch=micro_batch)
    cast = (lambda: AutocastEmulation(dtype)) if dtype is not None else contextlib.nullcontext
    with fused_attention(), recompute_context(cast), LiveTensorBytes() as live, \
            SavedTensorBytes(model.parameters()) as saved, cast():
        step()  # fused attention kernels on GPUs: never the (L, L) scores
    return saved.peak, live.peak


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
    }
    saved, live = activation_trace(cfg, micro, checkpointing)
    out.update(activations=saved, transient=live - saved)
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
