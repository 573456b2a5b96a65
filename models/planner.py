"""MAR planning model P (paper §2.2, Fig. 2 left; design §1.3).

A Llama-style transformer on *low-resolution* latents. Masked frames are *replaced* by a learnable
[MASK] token (not dropped as in LTH14/mar's MAE encoder), every block runs spatial attention then a
cross-frame attention (spatio-temporal in the paper) then an MLP, and the output is one planning
signal per frame: Z_cond = P(Z_low^mask), shape (B, T, N_low, D).

Registry variants:
    mar          2D RoPE over (frame, flattened index) with a learnable [NEXT] token after each row
                 (the paper's choice, after Lumina-T2X)
    mar_rope3d   plain 3D RoPE over (frame, row, column), no [NEXT] tokens
    none         no planner: the generator always sees Z_uncond (the "DM-only" row of Table 2)
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from mardini_bench.config import PlannerConfig
from mardini_bench.registry import PLANNERS
from models.attention import (AttentionContext, Mlp, RMSNorm, Rope, SelfAttention, build_video_attention, init_linears,
                              rope_table, run_block)


class PlannerBlock(nn.Module):
    """RMSNorm -> spatial MHA -> cross-frame MHA (Identity Attention) -> MLP, all pre-norm residual."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (RMSNorm(cfg.dim, cfg.norm_eps) for _ in range(3))
        self.spatial = SelfAttention(cfg.dim, cfg.heads, cfg.qk_norm, "spatial")
        self.video = build_video_attention(cfg.attention, cfg.dim, cfg.heads, cfg.qk_norm)
        self.mlp = Mlp(cfg.dim, cfg.mlp_dim)

    def forward(self, x: torch.Tensor, ctx: AttentionContext, video_ctx: AttentionContext) -> torch.Tensor:
        x = x + self.spatial(self.norm1(x), ctx)  # within-frame: no identity mask needed
        x = x + self.video(self.norm2(x), video_ctx)  # across frames: references see only themselves
        return x + self.mlp(self.norm3(x))


class Planner(nn.Module):
    """P: (B, T, C, h, w) low-res latents + frame mask -> planning signal (B, T, h*w, D)."""

    def __init__(self, cfg: PlannerConfig, latent_channels: int, next_token: bool = True):
        super().__init__()
        self.cfg, self.next_token = cfg, next_token
        self.embed = nn.Linear(latent_channels, cfg.dim)
        self.mask_token = nn.Parameter(torch.zeros(cfg.dim))  # [MASK] replaces masked frames
        self.row_token = nn.Parameter(torch.zeros(cfg.dim)) if next_token else None  # [NEXT]
        self.blocks = nn.ModuleList(PlannerBlock(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        # Projection f back to Z_low for the masked-reconstruction warm-up (Eq. 2); the paper
        # removes it afterwards, MarDini.set_stage freezes it outside that stage.
        self.recon_head = nn.Linear(cfg.dim, latent_channels) if cfg.recon_head else None
        self.grad_checkpointing = False  # recompute each block in backward (train.activation_checkpointing)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All init in one place (DiT): xavier linears, zero biases, small learned tokens."""
        init_linears(self)
        nn.init.normal_(self.mask_token, std=0.02)
        if self.row_token is not None:
            nn.init.normal_(self.row_token, std=0.02)

    def _tokens(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C, h, w = z.shape
        x = self.embed(rearrange(z, "b t c h w -> b t h w c"))  # (B, T, h, w, D)
        x = torch.where(mask[:, :, None, None, None], self.mask_token.to(x.dtype), x)
        if self.next_token:  # a [NEXT] token closes every row: (B, T, h, w+1, D)
            row = self.row_token.to(x.dtype).expand(B, T, h, 1, -1)
            x = torch.cat((x, row), dim=3)
        return x.flatten(2, 3)  # (B, T, N', D)

    def _rope(self, T: int, h: int, w: int, device) -> Rope:
        layout = "next_token" if self.next_token else "grid"
        return rope_table(layout, (T, h, w), self.cfg.dim // self.cfg.heads, self.cfg.rope_theta, device)

    def forward(self, z_low: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Returns (planning signal (B,T,h*w,D), reconstruction of z_low (B,T,C,h,w) or None)."""
        B, T, C, h, w = z_low.shape
        x = self._tokens(z_low, mask)
        rope = self._rope(T, h, w, z_low.device)
        ctx = AttentionContext(rope, None)
        video_ctx = AttentionContext(rope, ~mask if self.cfg.identity_attention else None, self.cfg.identity_scope)
        for block in self.blocks:
            x = run_block(block, self.grad_checkpointing, x, ctx, video_ctx)
        x = self.norm(x)
        if self.next_token:  # drop the [NEXT] tokens: one signal per latent cell
            x = x.unflatten(2, (h, w + 1))[:, :, :, :w].flatten(2, 3)  # (B, T, h*w, D)
        recon = None
        if self.recon_head is not None:
            recon = rearrange(self.recon_head(x), "b t (h w) c -> b t c h w", h=h)
        return x, recon


def downsample_latents(z: torch.Tensor, factor: int) -> torch.Tensor:
    """Asymmetric resolution (paper §2.1): the planner sees the latent average-pooled by `factor`."""
    if factor == 1:
        return z
    B, T, C, H, W = z.shape
    if H % factor or W % factor:
        raise ValueError(f"latent size {H}x{W} is not divisible by planner.downsample={factor}")
    return F.avg_pool2d(z.flatten(0, 1), factor).unflatten(0, (B, T))


@PLANNERS.register
def mar(cfg: PlannerConfig, latent_channels: int) -> Planner:
    return Planner(cfg, latent_channels, next_token=True)


@PLANNERS.register
def mar_rope3d(cfg: PlannerConfig, latent_channels: int) -> Planner:
    return Planner(cfg, latent_channels, next_token=False)


@PLANNERS.register
def none(cfg: PlannerConfig, latent_channels: int) -> None:
    """DM-only ablation: no planner; the generator is conditioned on Z_uncond alone."""
    return None
