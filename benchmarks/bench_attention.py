"""Each attention type: fused SDPA (as the models run it) vs a plain matmul-softmax reference.

    python benchmarks/bench_attention.py                    # small generator's shapes
    python benchmarks/bench_attention.py --side 16 --frames 13 --dim 256 --heads 8   # 256 tokens per frame

Both paths get the same q/k/v and the same Identity-Attention mask (first frame a reference);
the script checks they agree, then prints forward+backward time and the plain/fused ratio.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import List, Optional
from unittest import mock

import torch
import torch.nn.functional as F

from mardini_bench.args import add_threads, script_parser
from mardini_bench.runtime import configure_threads
from models.attention import AttentionContext, build_video_attention, rope_table

PATTERNS = ("spatiotemporal", "factorised", "temporal", "spatial")


def plain_sdpa(q, k, v, attn_mask=None, **_):
    """softmax(q k^T / sqrt(d) + mask) v, as written before fused kernels existed (the mask is additive)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores + attn_mask
    return scores.softmax(-1) @ v


def time_fwd_bwd(layer, x, ctx, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        layer(x, ctx).sum().backward()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--side", type=int, default=8, help="tokens per frame side")
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    add_threads(ap)
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    B, T, N = args.batch, args.frames, args.side ** 2
    rope = rope_table("grid", (T, args.side, args.side), args.dim // args.heads, 10000.0, "cpu")
    ref = torch.zeros(B, T, dtype=torch.bool)
    ref[:, 0] = True
    ctx = AttentionContext(rope, ref)
    x = torch.randn(B, T, N, args.dim, requires_grad=True)
    print(f"B={B} T={T} N={N} dim={args.dim} heads={args.heads}, {threads} threads, fwd+bwd median of {args.repeats}")
    print(f"{'attention':<15} {'fused ms':>9} {'plain ms':>9} {'plain/fused':>11} {'max |diff|':>10}")
    for name in PATTERNS:
        torch.manual_seed(0)
        layer = build_video_attention(name, args.dim, args.heads, True)
        fused = time_fwd_bwd(layer, x, ctx, args.repeats)
        with mock.patch.object(F, "scaled_dot_product_attention", plain_sdpa):
            plain = time_fwd_bwd(layer, x, ctx, args.repeats)
            reference = layer(x, ctx).detach()
        diff = (layer(x, ctx).detach() - reference).abs().max().item()
        print(f"{name:<15} {fused * 1e3:>9.2f} {plain * 1e3:>9.2f} {plain / fused:>11.2f} {diff:>10.2e}")


if __name__ == "__main__":
    main()
