"""FVD feature pass: throughput, and peak memory that must not grow with the number of videos.

    python benchmarks/bench_fvd.py                      # real I3D throughput + RSS at N=200 vs 2000
    python benchmarks/bench_fvd.py --stylegan-v-check   # the published 128-vs-128 sanity value

Memory is measured in fresh child processes (ru_maxrss), one per N, feeding 32x32 uint8 16-frame
videos in batches through the full FVD path (uint8 -> resize to 224 -> network -> float64 stats).
Reduced cost, stated in the output: on a 2-core CPU the real I3D runs at ~1 video/s, so the N=200
vs N=2000 memory runs replace only the network forward with a fixed random projection of the same
input and output shapes; throughput is measured separately with the real network.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import List, Optional

import numpy as np
import torch

from mardini_bench.args import script_parser
from mardini_bench.metrics import FVD, frechet
from mardini_bench.metrics.i3d import load_i3d


class ProjectionNet(torch.nn.Module):
    """Stand-in with I3D's input/output shapes: (N,3,T,224,224) -> (N,400), ~free to run."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 28 * 28, 400)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool3d(x, (x.shape[2], 8, 8))  # (N, 3, 1, 28, 28)
        return self.proj(pooled.flatten(1))


def synthetic(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 16, 3, 32, 32), generator=g, dtype=torch.uint8)


def stream(n: int, weights: str, cheap: bool, batch: int = 16) -> float:
    metric = FVD(weights=weights, batch_size=batch)
    if cheap:
        metric._net = ProjectionNet()
    start = time.perf_counter()
    for i in range(0, n, batch):
        metric.update(real=synthetic(min(batch, n - i), i), fake=synthetic(min(batch, n - i), i + 1))
    metric.compute()
    return time.perf_counter() - start


def child(n: int, weights: str) -> None:
    seconds = stream(n, weights, cheap=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": seconds, "peak_rss_mb": rss_mb}))


def memory_run(n: int, weights: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--weights", weights],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def throughput(weights: str, n: int) -> float:
    model = load_i3d(weights)
    from mardini_bench.metrics.preprocess import i3d_input

    videos = synthetic(n, 0)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, 4):
            model(i3d_input(videos[i:i + 4]))
    return n / (time.perf_counter() - start)


def stylegan_v_check(weights: str, batch: int = 8) -> float:
    """128 vs 128 videos of RandomState(seed).rand(128,16,224,224,3), seeds 1 and 2, fed to I3D
    as-is in [0, 1] (no rescale, no resize), np.cov statistics. Published: 10.1381 (TF, torchscript)."""
    model = load_i3d(weights)
    stats = []
    for seed in (1, 2):
        data = np.random.RandomState(seed).rand(128, 16, 224, 224, 3)  # float64, ~2.5 GB
        s = frechet.FeatureStats(400)
        with torch.no_grad():
            for i in range(0, 128, batch):
                x = torch.from_numpy(data[i:i + batch]).float().permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
                s.update(model(x))
        stats.append(s)
        del data
    return frechet.frechet_distance(stats[0].mean, stats[0].cov(1), stats[1].mean, stats[1].cov(1))


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--weights", required=True, help="folder with i3d_kinetics400_tfhub.pt")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs=2, default=[200, 2000])
    ap.add_argument("--throughput-videos", type=int, default=8)
    ap.add_argument("--stylegan-v-check", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    if args.child is not None:
        return child(args.child, args.weights)
    if args.stylegan_v_check:
        print(f"StyleGAN-V check FVD = {stylegan_v_check(args.weights):.6f} (published 10.1381)")
        return
    vps = throughput(args.weights, args.throughput_videos)
    print(f"real I3D feature pass (32x32 -> 224, 16 frames): {vps:.2f} videos/s over {args.throughput_videos} videos")
    small, large = (memory_run(n, args.weights) for n in args.sizes)
    print("memory runs (I3D forward replaced by a projection of the same shapes; everything else real):")
    for r in (small, large):
        print(f"  N={r['n']:>5} real + {r['n']} fake videos: peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s")
    print(f"peak RSS ratio N={large['n']} / N={small['n']}: {large['peak_rss_mb'] / small['peak_rss_mb']:.3f}")


if __name__ == "__main__":
    main()
