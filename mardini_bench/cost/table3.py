"""Paper Table 3 at paper scale without a GPU: FLOPs and memory estimates per generated video.

MarDini-S is built on the `meta` device (nothing allocated) at 256² and 512² output (latent =
output / 8, 16 channels, the paper's VAE), for asymmetric attention (generator temporal vs
spatio-temporal) x asymmetric resolution (planner on the 256-px latent, 32 x 32, vs the full
latent) x 9 or 13 frames with one reference frame (1 -> 8, 1 -> 12). Per video: planner once +
25 DDIM generator calls, no guidance doubling (the paper does not say Table 3 uses CFG).

Memory is an estimate of the sampling peak under bf16 mixed precision: fp32 parameters (autocast
keeps them) plus the peak bytes of live tensors (`LiveTensorBytes`), traced in fp32 on meta and
counted at 2 bytes per element (meta has no autocast), with two attention paths, because meta runs
SDPA as its math decomposition:
    mem_math_gb    attention scores materialised (B, H, L, L), as the math path does
    mem_fused_gb   a fused kernel: only the output, plus the (B, 1, L, L) additive bias that
                   PyTorch builds from a boolean Identity-Attention mask for the efficient kernel
Ratios between settings are printed next to the paper's latency and memory ratios (A100, bf16).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mardini_bench.cost.paper import load_paper
from mardini_bench.config import RunConfig, apply_overrides, config_hash
from mardini_bench.cost import CostError, LiveTensorBytes, latent_shape
from mardini_bench.factory import build_model

PLANNER_LATENT_SIDE = 32  # "asymmetric resolution": P at 256 px = 32 x 32 latent (design §1.6)
SAMPLE_STEPS = 25
RESOLUTIONS = (256, 512)
BF16_OVER_FP32 = 0.5  # activations are traced in fp32 on meta; the paper ran them in bf16


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the paper's Table 3 (row ids as in results/paper/paper_tables.csv)."""

    row_id: str
    asym_attn: bool  # generator temporal-only attention (/T) instead of spatio-temporal
    asym_res: bool  # planner on the 32 x 32 latent instead of the generator's full latent
    frames: int  # one reference frame, the rest generated


SETTINGS = (Setting("no_asym_9", False, False, 9), Setting("asym_res_9", False, True, 9),
            Setting("no_asym_13", False, False, 13), Setting("asym_res_13", False, True, 13),
            Setting("asym_attn_13", True, False, 13), Setting("asym_both_13", True, True, 13))


def setting_config(s: Setting, resolution: int) -> RunConfig:
    """RunConfig of MarDini-S for one setting at `resolution` px output."""
    preset = "mardini_s_t" if s.asym_attn else "mardini_s_st"
    latent = resolution // 8
    down = latent // PLANNER_LATENT_SIDE if s.asym_res else 1
    return apply_overrides(RunConfig(), [f"model={preset}", f"model.planner.downsample={max(down, 1)}",
                                         f"data.frames={s.frames}", f"data.resolution={resolution}",
                                         f"model.diffusion.sample_steps={SAMPLE_STEPS}", "model.diffusion.cfg_scale=1.0"])


def _sample_inputs(model: torch.nn.Module, cfg: RunConfig):
    z = torch.empty(latent_shape(model, cfg, 1), device="meta")
    mask = torch.ones(1, cfg.data.frames, dtype=torch.bool)
    mask[:, 0] = False  # image-to-video: 1 reference frame (paper: "9 (1 to 8)")
    return z, mask.to("meta")


# ----------------------------------------------------------------------------------------------
# A fused-attention stand-in for memory on meta
# ----------------------------------------------------------------------------------------------
class _FusedAttentionShape(torch.autograd.Function):
    """What a fused (flash / memory-efficient) kernel keeps for backward: q, k, v, the output, one fp32
    log-sum-exp per query row and the additive mask if any, never the (L, L) scores; backward makes
    dq, dk, dv."""

    @staticmethod
    def forward(ctx, q, k, v, bias):
        out = q.new_empty(q.shape[:-1] + v.shape[-1:])
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, lse, *(() if bias is None else (bias,)))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors[:3]
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), None


def _fused_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Output-only SDPA on meta; a boolean mask becomes a float bias as the efficient kernel needs."""
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device)  # made per call, like PyTorch's
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return _FusedAttentionShape.apply(q, k, v, attn_mask)
    return q.new_empty(q.shape[:-1] + v.shape[-1:])


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """Swap F.scaled_dot_product_attention for `_fused_sdpa` (memory estimates on meta only)."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


# ----------------------------------------------------------------------------------------------
# Measuring one setting
# ----------------------------------------------------------------------------------------------
def _flops_at(model: torch.nn.Module, z, mask, steps: int) -> Dict[str, int]:
    with FlopCounterMode(display=False) as counter:
        model.sample_latents(z, mask, steps=steps, cfg_scale=1.0)
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    return {"flops": int(counter.get_total_flops()), "flops_planner": int(per_module.get("Planner", 0)),
            "flops_generator": int(per_module.get("Generator", 0))}


def _flops(model: torch.nn.Module, z, mask, steps: int = SAMPLE_STEPS) -> Dict[str, int]:
    """FLOPs of a `steps`-step video, exactly: every DDIM step costs the same, so count 1 and 2 steps."""
    one, two = _flops_at(model, z, mask, 1), _flops_at(model, z, mask, 2)
    return {k: one[k] + (steps - 1) * (two[k] - one[k]) for k in one}


def _peak_gb(model: torch.nn.Module, z, mask, fused: bool) -> float:
    """fp32 params + bf16-sized peak live bytes of one planner call and one DDIM step (later steps repeat it)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    with (fused_attention() if fused else contextlib.nullcontext()), LiveTensorBytes() as tracker:
        model.sample_latents(z, mask, steps=1, cfg_scale=1.0)
    return (params + tracker.peak * BF16_OVER_FP32) / 1e9


def measure(s: Setting, resolution: int) -> Dict[str, object]:
    """FLOPs per video and bf16 memory estimates for one setting on the meta device."""
    cfg = setting_config(s, resolution)
    model = build_model(cfg, device="meta").eval()
    z, mask = _sample_inputs(model, cfg)
    with torch.no_grad():
        row = {"row_id": s.row_id, "resolution": resolution, "asym_attn": s.asym_attn, "asym_res": s.asym_res,
               "frames": s.frames, "planner_latent": latent_shape(model, cfg, 1)[-1] // cfg.model.planner.downsample,
               **_flops(model, z, mask)}
        row["mem_math_gb"] = _peak_gb(model, z, mask, fused=False)
        row["mem_fused_gb"] = _peak_gb(model, z, mask, fused=True)
    return row


# ----------------------------------------------------------------------------------------------
# The table, with the paper's numbers and ratios
# ----------------------------------------------------------------------------------------------
def _paper_value(paper, row_id: str, column: str) -> Optional[float]:
    if paper is None:
        return None
    hit = paper[(paper["table"] == "table3") & (paper["row_id"] == row_id) & (paper["column"] == column)]
    return float(hit["value"].iloc[0]) if len(hit) and hit["value"].iloc[0] else None


def table3_rows(paper_tables: Optional[str] = None,
                resolutions: Sequence[int] = RESOLUTIONS) -> List[Dict[str, object]]:
    """Every setting at each resolution, with the paper's latency/memory and ratios to row 1."""
    bad = [r for r in resolutions if r % (8 * PLANNER_LATENT_SIDE)]
    if bad:
        raise CostError(f"resolutions {bad} are not multiples of {8 * PLANNER_LATENT_SIDE} (the planner's 256 px)")
    paper = load_paper(paper_tables)
    rows, done = [], {}
    for r, s in ((r, s) for r in resolutions for s in SETTINGS):
        key = config_hash(setting_config(s, r))  # at 256 px both planner resolutions are one config
        if key not in done:
            done[key] = measure(s, r)
        rows.append({**done[key], "row_id": s.row_id, "asym_res": s.asym_res})
    for row in rows:
        row["paper_latency_s"] = _paper_value(paper, row["row_id"], f"{row['resolution']} latency")
        row["paper_mem_gb"] = _paper_value(paper, row["row_id"], f"{row['resolution']} mem")
    for res in resolutions:
        base = next(r for r in rows if r["resolution"] == res and r["row_id"] == SETTINGS[0].row_id)
        for row in (r for r in rows if r["resolution"] == res):
            for key, ref in (("flops", "flops"), ("mem_fused_gb", "mem_fused_gb"), ("mem_math_gb", "mem_math_gb"),
                             ("paper_latency_s", "paper_latency_s"), ("paper_mem_gb", "paper_mem_gb")):
                row[f"{key}_ratio"] = _ratio(row[key], base[ref])
    return rows


def _ratio(x: Optional[float], base: Optional[float]) -> Optional[float]:
    return None if x is None or not base else x / base
