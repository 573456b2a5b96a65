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

import contextlib
import functools
from typing import Callable, ContextManager, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint, noop_context_fn

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
    return Rope(angles)(x)


class Rope:
    """One position set's rotation, tabled once per forward: cos and sin per pair, laid out to the full
    head width, so rotating q or k is two multiplies and an add for every block that shares them.

    (x_2i, x_2i+1) -> (x_2i cos - x_2i+1 sin, x_2i+1 cos + x_2i sin): the same products and sums as the
    pairwise formula, so the result is the same to the bit."""

    def __init__(self, angles: torch.Tensor):
        cos, sin = angles.cos(), angles.sin()  # (L, hd/2)
        self.cos = cos.repeat_interleave(2, dim=-1)[:, None]  # (L, 1, hd): c0 c0 c1 c1 ...
        self.sin = torch.stack((-sin, sin), dim=-1).flatten(-2)[:, None]  # (L, 1, hd): -s0 s0 -s1 s1 ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xf = x if x.dtype == torch.float32 else x.float()  # rotate in fp32 under autocast
        swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (..., hd): x1 x0 x3 x2 ...
        out = xf * self.cos + swapped * self.sin
        return out if out.dtype == x.dtype else out.to(x.dtype)


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


def rope_table(layout: str, dims: Tuple[int, ...], head_dim: int, theta: float, device) -> Rope:
    """The RoPE table of a token layout, cached: a function of the shapes only, so every forward of a
    run reuses one (its trigonometry once, not once per step and per block).

    layout "grid"        (T, h, w): plain 3D positions (t, y, x)
           "next_token"  (T, h, w): (frame, index) with a [NEXT] token ending each row (the planner)
           "resampled"   (T, gh, gw, h, w): a gh x gw grid's cell centres in units of an h x w grid
                         (generator tokens placed on the planner's grid for the cross-attention)"""
    build = _rope_table.__wrapped__ if torch.compiler.is_compiling() else _rope_table  # no cache while tracing
    return build(layout, tuple(dims), head_dim, float(theta), torch.device(device) if device is not None else None)


@functools.lru_cache(maxsize=64)
def _rope_table(layout: str, dims: Tuple[int, ...], head_dim: int, theta: float, device) -> Rope:
    if layout == "next_token":
        pos = next_token_positions(*dims, device=device)
    elif layout == "grid":
        pos = grid_positions(*dims, device=device)
    elif layout == "resampled":
        T, gh, gw, h, w = dims
        pos = grid_positions(T, gh, gw, device)
        pos[:, 1] = (pos[:, 1] + 0.5) * (h / gh) - 0.5  # a cell's centre: (i + 0.5) * (h / gh) - 0.5
        pos[:, 2] = (pos[:, 2] + 0.5) * (w / gw) - 0.5
    else:
        raise ValueError(f"unknown RoPE layout {layout!r}; valid: grid, next_token, resampled")
    return Rope(rope_angles(pos, head_dim, theta))


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
class AttentionContext:
    """What every attention call of one forward shares: the tokens' RoPE table and which frames are
    references, with each Identity Attention mask built once per forward instead of once per block.

    Masks are additive (0 where a token may attend, -inf where not) in the dtype attention computes in:
    a boolean mask would be converted by every call and kept by each call's backward, (B, L, L) per
    block (170 MB a block for one 256x256 clip at the paper's widths)."""

    def __init__(self, rope: Optional[Rope], ref: Optional[torch.Tensor], scope: str = "token"):
        self.rope = rope  # rotation of the T*N tokens in frame-major order; None = no RoPE
        self.ref = ref  # (B, T) bool, True = clean reference frame; None = no identity
        self.scope = scope  # identity scope: "token" or "frame"
        self._masks: Dict[Tuple[str, int, torch.dtype], Optional[torch.Tensor]] = {}

    def identity_mask(self, pattern: str, tokens: int, like: torch.Tensor) -> Optional[torch.Tensor]:
        """The SDPA mask of `pattern` for frames of `tokens` tokens, for queries `like` (None: every token
        sees every token)."""
        if self.ref is None:
            return None
        dtype = compute_dtype(like)
        key = (pattern, tokens, dtype)
        if key not in self._masks:
            if pattern == "spatiotemporal":
                allowed = identity_mask_full(self.ref, tokens, self.scope)
            elif pattern == "temporal":
                allowed = identity_mask_temporal(self.ref, tokens)
            else:
                allowed = identity_mask_spatial(self.ref, tokens, self.scope)
            self._masks[key] = None if allowed is None else torch.zeros(allowed.shape, dtype=dtype, device=allowed.device
                                                                        ).masked_fill_(~allowed, float("-inf"))
        return self._masks[key]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul-like op computes `x` in: autocast's when it is on, else x's own."""
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):  # meta has no autocast
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


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
        q, k, v = self.qkv(x).view(B, T * N, 3, self.heads, self.head_dim).unbind(2)  # (B, T*N, H, hd) each
        q, k = self.q_norm(q), self.k_norm(k)
        if ctx.rope is not None:  # rotate in the full (t, n) layout, before any regrouping
            q, k = ctx.rope(q), ctx.rope(k)
        out = _attend(q, k, v, T, N, self.pattern, ctx.identity_mask(self.pattern, N, q))  # (B, T*N, H, hd)
        return self.proj(out.reshape(B, T, N, D))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, T: int, N: int, pattern: str,
            mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Group (B, T*N, H, hd) tokens by `pattern` into SDPA's (batch, H, L, hd), attend, and return them
    in frame-major order."""
    B, L, H, hd = q.shape
    if pattern == "spatiotemporal":  # (B, H, T*N, hd)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        return out.transpose(1, 2)
    if pattern == "temporal":  # (B*N, H, T, hd): each spatial position across frames
        group = lambda z: z.view(B, T, N, H, hd).permute(0, 2, 3, 1, 4).reshape(B * N, H, T, hd)  # noqa: E731
        out = F.scaled_dot_product_attention(group(q), group(k), group(v), attn_mask=mask)
        return out.view(B, N, H, T, hd).permute(0, 3, 1, 2, 4).reshape(B, L, H, hd)
    if pattern == "spatial":  # (B*T, H, N, hd): within each frame
        group = lambda z: z.view(B * T, N, H, hd).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(group(q), group(k), group(v), attn_mask=mask)
        return out.transpose(1, 2).reshape(B, L, H, hd)
    raise ValueError(f"unknown attention pattern {pattern!r}")


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

    def forward(self, x: torch.Tensor, context: torch.Tensor, q_rope: Optional[Rope], k_rope: Optional[Rope],
                per_frame: bool) -> torch.Tensor:
        # x (B, T, N, D); context (B, T, M, Dc) with M planning tokens per frame
        B, T, N, D = x.shape
        M = context.shape[2]
        q = self.q_norm(self.q(x).view(B, T * N, self.heads, self.head_dim))
        k, v = self.kv(context).view(B, T * M, 2, self.heads, self.head_dim).unbind(2)  # (B, T*M, H, hd) each
        k = self.k_norm(k)
        if q_rope is not None:
            q, k = q_rope(q), k_rope(k)
        if per_frame:  # frame i reads only its own planning signal z_cond_i: (B*T, H, N or M, hd)
            q = q.view(B * T, N, self.heads, self.head_dim).transpose(1, 2)
            k, v = (z.view(B * T, M, self.heads, self.head_dim).transpose(1, 2) for z in (k, v))
        else:  # every token reads every frame's planning signal: (B, H, T*N or T*M, hd)
            q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B*T or B, H, N or T*N, hd)
        return self.proj(out.transpose(1, 2).reshape(B, T, N, D))


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
        xf = x if x.dtype == torch.float32 else x.float()  # normalise in fp32 under autocast
        out = F.rms_norm(xf, (x.shape[-1],), self.weight, eps=self.eps)
        return out if out.dtype == x.dtype else out.to(x.dtype)


class Mlp(nn.Module):
    """Two-matrix GELU MLP; the parameter arithmetic of Table 1 needs 2 matrices (design §1.3)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


# Entered around every recomputed block (a callable returning a context manager; None = nothing): torch
# function modes are not active in backward, so a trace that casts as autocast does re-enters its mode
# here (`cost.memory.AutocastEmulation`). Set it with `recompute_context`.
_RECOMPUTE: Optional[Callable[[], ContextManager]] = None


@contextlib.contextmanager
def recompute_context(factory: Callable[[], ContextManager]) -> Iterator[None]:
    """Enter `factory()` around each block that activation checkpointing recomputes while this is active."""
    global _RECOMPUTE
    before, _RECOMPUTE = _RECOMPUTE, factory
    try:
        yield
    finally:
        _RECOMPUTE = before


def run_block(block: nn.Module, checkpointed: bool, *args, **kwargs) -> torch.Tensor:
    """`block(*args, **kwargs)`; with `checkpointed` (and grad on) its activations are not kept but
    recomputed in backward from its inputs (train.activation_checkpointing)."""
    if not (checkpointed and torch.is_grad_enabled()):
        return block(*args, **kwargs)
    factory = _RECOMPUTE
    context_fn = (lambda: (contextlib.nullcontext(), factory())) if factory is not None else noop_context_fn
    return checkpoint(block, *args, use_reentrant=False, context_fn=context_fn, **kwargs)


def init_linears(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear (DiT / MAE initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_video_attention(name: str, dim: int, heads: int, qk_norm: bool) -> nn.Module:
    return ATTENTIONS.build(name, dim, heads, qk_norm)


__all__: Sequence[str] = ["AttentionContext", "Rope", "SelfAttention", "CrossAttention", "RMSNorm", "Mlp",
                          "rope_angles", "rope_table", "grid_positions", "next_token_positions", "mixes_frames"]
