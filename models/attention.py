"""Attention for MarDini: RoPE, Identity Attention, and the registry of attention types.

Every block has one "cross-frame" attention sub-layer whose token-mixing pattern is an `ATTENTIONS`
registry entry (paper Fig. 2: spatio-temporal in the planner, temporal or spatio-temporal in the
generator):

    spatiotemporal  every token attends to every token of every frame        (B, T*N)
    factorised      spatial (within frame) then temporal (same position)     (B*T, N) then (B*N, T)
    temporal        each spatial position attends across frames              (B*N, T)
    spatial         tokens attend within their own frame                     (B*T, N)

All of them run through `F.scaled_dot_product_attention`, with a boolean mask only where Identity
Attention needs one, so the fused/flash kernels are used otherwise.

Identity Attention (paper §2.3): tokens of clean reference frames attend only to themselves, so
the reference frames pass through as "an identity projection" and nothing noisy leaks into them.
The paper is ambiguous about spatio-temporal layers (design §1.5): `scope="token"` lets a reference
token see only itself, `scope="frame"` lets it see its own frame. In temporal layers they coincide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from mardini_bench.registry import ATTENTIONS


# ----------------------------------------------------------------------------------------------
# Rotary position embedding over several axes
# ----------------------------------------------------------------------------------------------
def rope_axis_dims(head_dim: int, n_axes: int) -> Tuple[int, ...]:
    """Split the head dimension into even parts, one per axis (the first axis gets the remainder)."""
    half = head_dim // 2
    base = half // n_axes
    dims = [base] * n_axes
    dims[0] += half - base * n_axes
    return tuple(2 * d for d in dims)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """positions (L, A) float -> angles (L, head_dim/2): each axis rotates its own slice of dims."""
    parts = []
    for axis, dim in enumerate(rope_axis_dims(head_dim, positions.shape[-1])):
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)
        parts.append(positions[:, axis, None].float() * freqs)  # (L, dim/2)
    return torch.cat(parts, dim=-1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """x (..., L, H, hd), angles (L, hd/2); rotate pairs (x_2i, x_2i+1) by their angle."""
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # (L, 1, hd/2)
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (..., L, H, hd/2) each
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def grid_positions(frames: int, height: int, width: int, device=None) -> torch.Tensor:
    """(T*H*W, 3) integer (t, y, x) positions in frame-major order: plain 3D RoPE."""
    t, y, x = torch.meshgrid(torch.arange(frames, device=device), torch.arange(height, device=device),
                             torch.arange(width, device=device), indexing="ij")
    return torch.stack((t, y, x), dim=-1).reshape(-1, 3).float()


def next_token_positions(frames: int, height: int, width: int, device=None) -> torch.Tensor:
    """(T*H*(W+1), 2) positions for 2D RoPE with a [NEXT] token ending every row (paper §2.2).

    Each frame is flattened to one sequence in which a learnable [NEXT] token follows every row
    (Lumina-T2X's [nextline]); the two RoPE axes are (frame, index in that flattened sequence).
    """
    per_frame = height * (width + 1)
    t, s = torch.meshgrid(torch.arange(frames, device=device), torch.arange(per_frame, device=device),
                          indexing="ij")
    return torch.stack((t, s), dim=-1).reshape(-1, 2).float()


# ----------------------------------------------------------------------------------------------
# Identity Attention masks (True = may attend, as in SDPA)
# ----------------------------------------------------------------------------------------------
def identity_mask_full(ref: torch.Tensor, tokens: int, scope: str) -> torch.Tensor:
    """ref (B, T) bool -> (B, 1, T*N, T*N): reference queries see only themselves (or their frame)."""
    B, T = ref.shape
    L = T * tokens
    q_ref = ref.repeat_interleave(tokens, dim=1)  # (B, L)
    if scope == "frame":
        frame = torch.arange(T, device=ref.device).repeat_interleave(tokens)
        own = frame[:, None] == frame[None, :]  # (L, L)
    else:
        own = torch.eye(L, dtype=torch.bool, device=ref.device)
    return (~q_ref[:, :, None] | own[None]).unsqueeze(1)


def identity_mask_temporal(ref: torch.Tensor, tokens: int) -> torch.Tensor:
    """ref (B, T) -> (B*N, 1, T, T) for attention across frames at each spatial position."""
    T = ref.shape[1]
    own = torch.eye(T, dtype=torch.bool, device=ref.device)
    mask = ~ref[:, :, None] | own[None]  # (B, T, T)
    return mask.repeat_interleave(tokens, dim=0).unsqueeze(1)


def identity_mask_spatial(ref: torch.Tensor, tokens: int, scope: str) -> Optional[torch.Tensor]:
    """ref (B, T) -> (B*T, 1, N, N); with scope="frame" a frame may see itself, so no mask."""
    if scope == "frame":
        return None
    own = torch.eye(tokens, dtype=torch.bool, device=ref.device)
    mask = ~ref.reshape(-1)[:, None, None] | own[None]  # (B*T, N, N)
    return mask.unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# Attention layers
# ----------------------------------------------------------------------------------------------
@dataclass
class AttentionContext:
    """What every attention call in a block shares: positions and which frames are references."""

    angles: Optional[torch.Tensor]  # (T*N, head_dim/2) RoPE angles, frame-major; None = no RoPE
    ref: Optional[torch.Tensor]  # (B, T) bool, True = clean reference frame; None = no identity
    scope: str = "token"  # identity scope: "token" or "frame"


class SelfAttention(nn.Module):
    """Multi-head self-attention over video tokens (B, T, N, D) with a chosen mixing pattern."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True, pattern: str = "spatiotemporal"):
        super().__init__()
        assert dim % heads == 0, f"dim {dim} must be divisible by heads {heads}"
        self.heads, self.head_dim, self.pattern = heads, dim // heads, pattern
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # QK-norm: LayerNorm on projected q and k (paper §2.2, after Lumina/ViT-22B) bounds the
        # logits, one of the stability tricks the paper lists (§2.4).
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        B, T, N, D = x.shape
        q, k, v = rearrange(self.qkv(x), "b t n (three h d) -> three b (t n) h d", three=3, h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if ctx.angles is not None:  # rotate in the full (t, n) layout, before any regrouping
            q, k = apply_rope(q, ctx.angles), apply_rope(k, ctx.angles)
        out = _attend(q, k, v, T, N, self.pattern, ctx)  # (B, T*N, H, hd)
        return self.proj(rearrange(out, "b (t n) h d -> b t n (h d)", t=T))


def _attend(q, k, v, T: int, N: int, pattern: str, ctx: AttentionContext) -> torch.Tensor:
    """Group tokens by `pattern`, run SDPA, and return (B, T*N, H, hd) in frame-major order."""
    B = q.shape[0]
    ref = ctx.ref
    if pattern == "spatiotemporal":
        groups, mask = "b l h d -> b h l d", identity_mask_full(ref, N, ctx.scope) if ref is not None else None
        undo = {}
    elif pattern == "temporal":
        groups, mask = "b (t n) h d -> (b n) h t d", identity_mask_temporal(ref, N) if ref is not None else None
        undo = {"b": B, "n": N}
    elif pattern == "spatial":
        groups, mask = "b (t n) h d -> (b t) h n d", identity_mask_spatial(ref, N, ctx.scope) if ref is not None else None
        undo = {"b": B, "t": T}
    else:
        raise ValueError(f"unknown attention pattern {pattern!r}")
    q, k, v = (rearrange(z, groups, t=T, n=N) if pattern != "spatiotemporal" else rearrange(z, groups)
               for z in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    inverse = " -> ".join(reversed(groups.split(" -> ")))
    return rearrange(out, inverse, **undo)


class FactorisedAttention(nn.Module):
    """Spatial then temporal attention in one sub-layer (Latte/ST-DiT style), each with own weights."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        self.spatial = SelfAttention(dim, heads, qk_norm, "spatial")
        self.temporal = SelfAttention(dim, heads, qk_norm, "temporal")

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        h = self.spatial(x, ctx)
        return h + self.temporal(x + h, ctx)  # the sub-layer's update; the caller adds the residual


class CrossAttention(nn.Module):
    """Generator tokens (queries) attend to planning-signal tokens (keys/values), paper §2.2.

    Keys and values are projected straight from the planner width (4096 in the paper), which is
    what makes the generator 288M (design §1.4). RoPE puts both on the planner's grid so the
    attention knows where each planning token sits relative to each generator token.
    """

    def __init__(self, dim: int, context_dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor, q_angles: Optional[torch.Tensor],
                k_angles: Optional[torch.Tensor], per_frame: bool) -> torch.Tensor:
        # x (B, T, N, D); context (B, T, M, Dc) with M planning tokens per frame
        B, T, N, _ = x.shape
        q = self.q_norm(rearrange(self.q(x), "b t n (h d) -> b (t n) h d", h=self.heads))
        k, v = rearrange(self.kv(context), "b t m (two h d) -> two b (t m) h d", two=2, h=self.heads)
        k = self.k_norm(k)
        if q_angles is not None:
            q, k = apply_rope(q, q_angles), apply_rope(k, k_angles)
        if per_frame:  # frame i reads only its own planning signal z_cond_i
            q = rearrange(q, "b (t n) h d -> (b t) h n d", t=T)
            k, v = (rearrange(z, "b (t m) h d -> (b t) h m d", t=T) for z in (k, v))
            out = rearrange(F.scaled_dot_product_attention(q, k, v), "(b t) h n d -> b t n (h d)", b=B)
        else:  # every token reads every frame's planning signal
            q, k, v = (rearrange(z, "b l h d -> b h l d") for z in (q, k, v))
            out = rearrange(F.scaled_dot_product_attention(q, k, v), "b h (t n) d -> b t n (h d)", t=T)
        return self.proj(out)


# ----------------------------------------------------------------------------------------------
# Registry: the block's cross-frame sub-layer
# ----------------------------------------------------------------------------------------------
@ATTENTIONS.register
def spatiotemporal(dim: int, heads: int, qk_norm: bool = True) -> nn.Module:
    """Full attention over all tokens of all frames (the paper's planner and /ST generator)."""
    return SelfAttention(dim, heads, qk_norm, "spatiotemporal")


@ATTENTIONS.register
def factorised(dim: int, heads: int, qk_norm: bool = True) -> nn.Module:
    """Spatial then temporal attention: cheaper than full S-T at high resolution."""
    return FactorisedAttention(dim, heads, qk_norm)


@ATTENTIONS.register
def temporal(dim: int, heads: int, qk_norm: bool = True) -> nn.Module:
    """Attention across frames at each spatial position (the paper's /T generator)."""
    return SelfAttention(dim, heads, qk_norm, "temporal")


@ATTENTIONS.register
def spatial(dim: int, heads: int, qk_norm: bool = True) -> nn.Module:
    """Within-frame attention only: no temporal mixing in this sub-layer (an ablation floor)."""
    return SelfAttention(dim, heads, qk_norm, "spatial")


def mixes_frames(name: str) -> bool:
    """Whether an attention type lets a token see other frames (Identity Attention matters)."""
    return name != "spatial"


class RMSNorm(nn.Module):
    """Root-mean-square norm (Llama), the planner's pre-norm (paper §2.2)."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x)
        return out * self.weight if self.weight is not None else out


class Mlp(nn.Module):
    """Two-matrix GELU MLP; the parameter arithmetic of Table 1 needs 2 matrices (design §1.3)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def init_linears(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear (DiT / MAE initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_video_attention(name: str, dim: int, heads: int, qk_norm: bool) -> nn.Module:
    return ATTENTIONS.build(name, dim, heads, qk_norm)


__all__: Sequence[str] = ["AttentionContext", "SelfAttention", "CrossAttention", "RMSNorm", "Mlp",
                          "rope_angles", "grid_positions", "next_token_positions", "mixes_frames"]
