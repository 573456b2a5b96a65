"""Diffusion generation model G (paper §2.2, Fig. 2 right; design §1.4).

A DiT-style transformer on *full-resolution* latents, "designed in alignment with MAR" with three
differences: adaLN timestep modulation, cross-attention to the planning signal, and (for /T
variants) temporal instead of spatio-temporal attention. Each block reads

    adaLN(t) -> spatial MHA -> cross-frame MHA (Identity Attention) -> cross-attention to Z_cond
             -> MLP whose normalised input is also scaled by the planning signal ("Scale", Fig. 2)

Choices where the paper is silent (each a config switch, see GeneratorConfig):
  * cross_attention="frame": frame i attends to its own z_cond_i ("global": all frames' signals);
  * plan_scale: the planning signal, upsampled to G's grid, gives a per-token (1 + scale) on the
    MLP input; zero-initialised so training starts from plain cross-attention conditioning;
  * ref_timestep="zero": clean reference frames are modulated with t=0, noisy ones with t.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from mardini_bench.config import ROPE_THETA, GeneratorConfig
from mardini_bench.registry import GENERATORS
from models.attention import (AttentionContext, CrossAttention, Mlp, Rope, SelfAttention, build_video_attention,
                              init_linears, rope_table, run_block)
from models.masks import neighbours


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def with_reference_channels(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, 3C + 1, H, W): each frame, its nearest reference before and after (the
    one that exists, when a side has none; a reference is its own neighbour) and its fraction of the
    way between them. References are clean in `x`, so no other input is needed."""
    B, T = mask.shape
    before, after = neighbours(mask)  # (B, T) each; -1 / T where a side has no reference
    before, after = torch.where(before < 0, after, before), torch.where(after >= T, before, after)
    rows = torch.arange(B, device=x.device)[:, None]
    t = torch.arange(T, device=x.device)
    frac = ((t - before).float() / (after - before).clamp(min=1).float()).to(x.dtype)  # (B, T) in [0, 1]
    frac = frac[:, :, None, None, None].expand(B, T, 1, *x.shape[-2:])
    return torch.cat((x, x[rows, before], x[rows, after], frac), dim=2)


class TimestepEmbedder(nn.Module):
    """Sinusoidal frequency embedding of t followed by an MLP (DiT)."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[..., None] * freqs  # (..., half)
        return self.mlp(torch.cat((args.cos(), args.sin()), dim=-1))


class GeneratorBlock(nn.Module):
    """One DiT block with the MarDini additions (cross-frame attention, cross-attention, plan scale)."""

    def __init__(self, cfg: GeneratorConfig, plan_dim: int):
        super().__init__()
        d = cfg.dim
        self.norm1, self.norm2, self.norm3, self.norm4 = (
            nn.LayerNorm(d, elementwise_affine=False, eps=1e-6) for _ in range(4))
        self.spatial = SelfAttention(d, cfg.heads, cfg.qk_norm, "spatial")
        self.video = build_video_attention(cfg.attention, d, cfg.heads, cfg.qk_norm)
        self.cross = CrossAttention(d, plan_dim, cfg.heads, cfg.qk_norm)
        self.mlp = Mlp(d, cfg.mlp_dim)
        # adaLN-Zero (DiT): shift/scale/gate for the spatial attention and the MLP from t.
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.plan_scale = nn.Linear(d, d) if cfg.plan_scale else None

    def forward(self, x: torch.Tensor, *, t_emb: torch.Tensor, ctx: AttentionContext, video_ctx: AttentionContext,
                plan: torch.Tensor, plan_tokens: Optional[torch.Tensor], q_rope: Rope, k_rope: Rope,
                per_frame: bool) -> torch.Tensor:
        """x (B, T, N, D): the N tokens of each of T frames; returns the same shape.

        t_emb        (B, T, D) per-frame timestep embedding (adaLN)
        ctx          within-frame attention: the RoPE table of the T*N tokens
        video_ctx    cross-frame attention: the same table and the reference frames (Identity Attention)
        plan         (B, T, M, Dp) planning signal: keys and values of the cross-attention
        plan_tokens  (B, T, N, D) planning signal on this grid, for the MLP scale; None without plan_scale
        q_rope       RoPE table of the T*N tokens placed on the planner's grid
        k_rope       RoPE table of the T*M planning tokens
        per_frame    cross-attention: frame i reads only its own planning signal (cross_attention=frame)
        """
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(t_emb)[:, :, None].chunk(6, dim=-1)
        x = x + gate1 * self.spatial(modulate(self.norm1(x), shift1, scale1), ctx)
        x = x + self.video(self.norm2(x), video_ctx)
        x = x + self.cross(self.norm3(x), plan, q_rope, k_rope, per_frame)
        h = modulate(self.norm4(x), shift2, scale2)
        if self.plan_scale is not None:
            h = h * (1 + self.plan_scale(plan_tokens))
        return x + gate2 * self.mlp(h)


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a linear projection back to latent patches (DiT)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c)[:, :, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class ConvHead(nn.Module):
    """Refines the per-token projection on the latent grid (GeneratorConfig.head="conv").

    Two 3x3 convolutions read the projection and the generator's own input (noisy frame, references)
    at full precision, modulated by the timestep; the second starts at zero, so training begins from
    the plain DiT head. Removing per-value noise at low noise levels needs the noisy values themselves,
    which a token narrower than its input no longer holds (U-ViT ends in a 3x3 conv likewise)."""

    def __init__(self, latent_channels: int, in_channels: int, dim: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(latent_channels + in_channels, hidden, 3, padding=1)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * hidden))
        self.conv2 = nn.Conv2d(hidden, latent_channels, 3, padding=1)

    def forward(self, out: torch.Tensor, x_in: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """out (B,T,C,H,W) projected tokens; x_in (B,T,Cin,H,W) the generator's input; c (B,T,D) timestep."""
        B, T = out.shape[:2]
        h = self.conv1(torch.cat((out, x_in), dim=2).flatten(0, 1))  # (B*T, hidden, H, W)
        shift, scale = self.ada(c).flatten(0, 1)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(h * (1 + scale) + shift))
        return out + h.unflatten(0, (B, T))


class Generator(nn.Module):
    """G(Z_high^{noise,t}, Z_cond, t) -> v-prediction, all frames (the loss masks references out)."""

    def __init__(self, cfg: GeneratorConfig, latent_channels: int, plan_dim: int):
        super().__init__()
        self.cfg = cfg
        p, d = cfg.patch, cfg.dim
        # neighbours: x_t, the references before and after, and the frame's position between them
        in_channels = 3 * latent_channels + 1 if cfg.ref_channels == "neighbours" else latent_channels
        self.embed = nn.Linear(in_channels * p * p, d)
        self.t_embed = TimestepEmbedder(d)
        # Learnable unconditional signal Z_uncond for classifier-free guidance (paper §2.2):
        # one vector broadcast to every planning token, so it fits any resolution.
        self.uncond = nn.Parameter(torch.zeros(plan_dim))
        self.plan_proj = nn.Linear(plan_dim, d) if cfg.plan_scale else None
        self.blocks = nn.ModuleList(GeneratorBlock(cfg, plan_dim) for _ in range(cfg.depth))
        self.final = FinalLayer(d, latent_channels * p * p)
        self.head = ConvHead(latent_channels, in_channels, d, d) if cfg.head == "conv" else None
        self.grad_checkpointing = False  # recompute each block in backward (train.activation_checkpointing)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT init: xavier linears; adaLN, plan-scale and output layers zero (blocks start as identity)."""
        init_linears(self)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        nn.init.normal_(self.uncond, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight), nn.init.zeros_(block.ada[-1].bias)
            if block.plan_scale is not None:
                nn.init.zeros_(block.plan_scale.weight)
        for layer in (self.final.ada[-1], self.final.linear):
            nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)
        if self.head is not None:  # starts as the plain DiT head
            for layer in (self.head.ada[-1], self.head.conv2):
                nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)

    def conditioning(self, plan: Optional[torch.Tensor], shape, dtype: torch.dtype,
                     uncond: Optional[torch.Tensor]) -> torch.Tensor:
        """The signal G reads (B, T, M, Dp): `plan`, with Z_uncond for the clips where `uncond` (B,) is True;
        Z_uncond everywhere when there is no plan (DM-only). Read inside `forward`, so that a sharded
        generator (FSDP) has gathered its parameters whenever Z_uncond is used.

        Under no_grad Z_uncond is detached: an expanded view of a Parameter made there claims
        requires_grad without a grad_fn, which torch's module hooks (FLOP counter, module tracker) reject."""
        if plan is not None and uncond is None:
            return plan
        u = self.uncond if torch.is_grad_enabled() else self.uncond.detach()
        z_uncond = u.to(dtype).expand(shape)
        if plan is None:
            return z_uncond
        return torch.where(uncond[:, None, None, None], z_uncond, plan)

    def _plan_tokens(self, plan: torch.Tensor, h: int, w: int, gh: int, gw: int) -> Optional[torch.Tensor]:
        """Planning signal upsampled to the generator grid and projected: (B, T, gh*gw, D)."""
        if self.plan_proj is None:
            return None
        grid = rearrange(self.plan_proj(plan), "b t (h w) d -> (b t) d h w", h=h)
        grid = F.interpolate(grid, size=(gh, gw), mode="nearest")
        return rearrange(grid, "(b t) d h w -> b t (h w) d", b=plan.shape[0])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, plan: Optional[torch.Tensor], plan_hw,
                mask: torch.Tensor, uncond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x_t (B,T,C,H,W); t (B,) timesteps; plan (B,T,h*w,Dp), None = Z_uncond for every clip; mask (B,T)
        True = noisy frame; uncond (B,) True = that clip reads Z_uncond instead of its plan (CFG)."""
        B, T, C, H, W = x_t.shape
        h, w = plan_hw
        plan = self.conditioning(plan, (B, T, h * w, self.uncond.shape[0]), x_t.dtype if plan is None else plan.dtype,
                                 uncond)
        p = self.cfg.patch
        gh, gw = H // p, W // p
        x_in = with_reference_channels(x_t, mask) if self.cfg.ref_channels == "neighbours" else x_t
        x = self.embed(rearrange(x_in, "b t c (gh p1) (gw p2) -> b t (gh gw) (c p1 p2)", p1=p, p2=p))
        t_frame = t[:, None].expand(B, T).float()
        if self.cfg.ref_timestep == "zero":  # references are clean: condition them on t = 0
            t_frame = torch.where(mask, t_frame, torch.zeros_like(t_frame))
        c = self.t_embed(t_frame)  # (B, T, D)
        head_dim = self.cfg.dim // self.cfg.heads
        rope = rope_table("grid", (T, gh, gw), head_dim, ROPE_THETA, x.device)
        ctx = AttentionContext(rope, None)
        video_ctx = AttentionContext(rope, ~mask if self.cfg.identity_attention else None, self.cfg.identity_scope)
        # cross-attention: generator tokens and planning tokens both placed on the planner's grid
        q_rope = rope_table("resampled", (T, gh, gw, h, w), head_dim, ROPE_THETA, x.device)
        k_rope = rope_table("grid", (T, h, w), head_dim, ROPE_THETA, x.device)
        plan_tokens = self._plan_tokens(plan, h, w, gh, gw)
        per_frame = self.cfg.cross_attention == "frame"
        inputs = dict(t_emb=c, ctx=ctx, video_ctx=video_ctx, plan=plan, plan_tokens=plan_tokens,
                      q_rope=q_rope, k_rope=k_rope, per_frame=per_frame)
        for block in self.blocks:
            x = run_block(block, self.grad_checkpointing, x, **inputs)
        out = self.final(x, c)  # (B, T, N, C*p*p)
        out = rearrange(out, "b t (gh gw) (c p1 p2) -> b t c (gh p1) (gw p2)", gh=gh, p1=p, p2=p)
        return out if self.head is None else self.head(out, x_in, c)


@GENERATORS.register
def dit(cfg: GeneratorConfig, latent_channels: int, plan_dim: int) -> Generator:
    return Generator(cfg, latent_channels, plan_dim)


@GENERATORS.register
def none(cfg: GeneratorConfig, latent_channels: int, plan_dim: int) -> None:
    """MAR-only ablation (Table 2): the planner's projection head predicts the masked frames."""
    return None
