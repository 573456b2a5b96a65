"""Paper Table 3 at CPU scale: measured sampling latency and memory of the asymmetric designs.

    python benchmarks/bench_table3.py                  # `small` at 32x32, 25 DDIM steps, 2 threads
    python benchmarks/bench_table3.py --resolution 64 --repeats 5

The six rows of the paper's Table 3 (asymmetric attention: a temporal-only generator; asymmetric
resolution: the planner on a 2x smaller grid; 9 or 13 frames, one of them given) are built at the
`small` preset's width, untrained (cost does not depend on the weights), and each samples one video
with 25 DDIM steps and no guidance, as Table 3 does. Printed per row, all measured in this one run:
latency (fastest of --repeats after a warm-up) and the peak of live tensor bytes plus parameters
(fp32), each as a ratio to the first row; beside them the paper's latency and memory ratios (A100,
bf16, 512 px, where both asymmetries act) and our FLOP ratios at the paper's scale (MarDini-S on the
meta device, 512 px). Run it alone on the machine: other work inflates latencies unevenly.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from mardini_bench.args import add_threads, script_parser
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import LiveTensorBytes, best_latency, latent_shape
from mardini_bench.runtime import configure_threads
from mardini_bench.cost.table3 import SAMPLE_STEPS, SETTINGS, Setting, table3_rows
from mardini_bench.factory import build_model


def cpu_config(s: Setting, resolution: int) -> RunConfig:
    return apply_overrides(RunConfig(), [
        "model=small", f"data.resolution={resolution}", f"data.frames={s.frames}",
        f"model.generator.attention={'temporal' if s.asym_attn else 'spatiotemporal'}",
        f"model.planner.downsample={2 if s.asym_res else 1}",
        f"model.diffusion.sample_steps={SAMPLE_STEPS}", "model.diffusion.cfg_scale=1.0"])


@torch.no_grad()
def measure(s: Setting, resolution: int, repeats: int) -> Dict[str, float]:
    cfg = cpu_config(s, resolution)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    z, mask = torch.randn(latent_shape(model, cfg, 1)), torch.ones(1, cfg.data.frames, dtype=torch.bool)
    mask[:, 0] = False  # one given frame, as in Table 3

    def sample() -> torch.Tensor:
        return model.sample_latents(z, mask, steps=SAMPLE_STEPS, cfg_scale=1.0)

    params = sum(p.numel() * p.element_size() for p in model.parameters())
    with LiveTensorBytes() as tracker:
        model.sample_latents(z, mask, steps=1, cfg_scale=1.0)  # later steps repeat the first one's peak
    return {"latency_s": best_latency(sample, repeats), "mem_mb": (params + tracker.peak) / 2 ** 20}


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    add_threads(ap)
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    paper = {r["row_id"]: r for r in table3_rows(resolutions=[512])}
    ours: List[Dict[str, float]] = [measure(s, args.resolution, args.repeats) for s in SETTINGS]
    base = ours[0]
    print(f"Table 3 at CPU scale: `small` width, {args.resolution}x{args.resolution}, {SAMPLE_STEPS} DDIM steps, "
          f"1 given frame, {threads} thread(s); ratios to the first row")
    print(f"{'row':<13} {'latency s':>9} {'mem MB':>7} | {'lat x':>6} {'mem x':>6} | {'paper lat x':>11} "
          f"{'paper mem x':>11} {'paper-scale FLOPs x':>19}")
    fmt = lambda v: f"{v:.2f}" if v is not None else "OOM"  # noqa: E731  the paper has OOM cells
    for s, row in zip(SETTINGS, ours):
        p = paper[s.row_id]
        print(f"{s.row_id:<13} {row['latency_s']:>9.3f} {row['mem_mb']:>7.1f} | {row['latency_s'] / base['latency_s']:>6.2f} "
              f"{row['mem_mb'] / base['mem_mb']:>6.2f} | {fmt(p['paper_latency_s_ratio']):>11} "
              f"{fmt(p['paper_mem_gb_ratio']):>11} {p['flops_ratio']:>19.2f}")


if __name__ == "__main__":
    main()
