"""Score two sets of videos (or images) with one metric and print the value with its protocol.

    python -m mardini_bench.metrics fvd real_videos/ generated_videos/ --json
    python -m mardini_bench.metrics fid real.npz:videos generated.npy --ddof 0 --bootstrap 200
    python -m mardini_bench.metrics psnr real/ generated/ --protocol middle_frame
    python -m mardini_bench.metrics lpips real/ generated/ --protocol middle_frame   # MidF-LPIPS

REAL and GENERATED are folders of video files or uint8 .npy/.npz arrays (`FILE.npz:NAME` picks an
array). FID on videos pools their frames as images. PSNR/SSIM/LPIPS pair clips by sorted order.
Bad input prints one `error:` line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Optional, Tuple

from mardini_bench.args import Command, command_main
from mardini_bench.io import NoSpaceError
from mardini_bench.metrics.frechet import TRACE_SQRT_METHODS
from mardini_bench.metrics.info import is_distribution, metric_info
from mardini_bench.metrics.inputs import InputError, VideoSet
from mardini_bench.metrics.preprocess import I3D_RESIZES
from mardini_bench.metrics.result import MetricResult
from mardini_bench.registry import METRICS
from mardini_bench.runtime import check_environment, parse_device
from mardini_bench.weights import WeightsError


def parse_size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 128x128, got {text!r}") from None
    return h, w


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("metric", choices=METRICS.in_order())
    ap.add_argument("real", help="reference set: folder of videos, or .npy/.npz (FILE.npz:NAME)")
    ap.add_argument("fake", help="generated set, same forms")
    ap.add_argument("--json", action="store_true", help="print {value, protocol, ci} as JSON")
    ap.add_argument("--ddof", type=int, choices=[0, 1], default=1, help="covariance: 1 np.cov, 0 divide by N")
    ap.add_argument("--resize", choices=I3D_RESIZES, default="torch_bilinear", help="FVD resize to 224")
    ap.add_argument("--weights", default=None, help="folder holding the network weight files")
    ap.add_argument("--bootstrap", type=int, default=0, help="resamples for a 95%% interval (FVD/FID)")
    ap.add_argument("--frames", type=int, default=16, help="first frames of each video to use")
    ap.add_argument("--size", type=parse_size, default=None, help="common HxW for folders of mixed sizes")
    ap.add_argument("--protocol", choices=["all_frames", "middle_frame"], default="all_frames",
                    help="frames scored by per-frame metrics (PSNR, SSIM, LPIPS)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu", help="where the feature networks run (FVD, FID): cpu, cuda, cuda:N")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--trace-sqrt", choices=sorted(TRACE_SQRT_METHODS), default="auto",
                    help="tr sqrt(S1 S2) method (FVD/FID); all are exact and agree to ~1e-6. auto: the N x N "
                         "low-rank route when a set has fewer videos than feature dimensions, else sqrtm")


def build_metric(args: argparse.Namespace) -> Any:
    if is_distribution(args.metric):
        resize = args.resize if args.metric == "fvd" else None  # FVD's own option
        return METRICS.build(args.metric, weights=args.weights, ddof=args.ddof, resize=resize,
                             batch_size=args.batch_size, device=args.device,
                             bootstrap=args.bootstrap, seed=args.seed, trace_sqrt=args.trace_sqrt)
    if metric_info(args.metric).optional_weights:  # LPIPS: a backbone network from the weights folder
        return METRICS.build(args.metric, weights=args.weights, protocol=args.protocol, batch_size=args.batch_size)
    return METRICS.build(args.metric, protocol=args.protocol)


def check_args(args: argparse.Namespace) -> None:
    """Options no metric can use, refused before any file is read: counts out of range, and a --device
    this machine does not have (every metric refuses it, including those that compute on the CPU)."""
    if args.frames < 1 or args.batch_size < 1 or args.bootstrap < 0:
        raise InputError("--frames and --batch-size must be >= 1 and --bootstrap >= 0")
    if args.size is not None and min(args.size) < 1:
        raise InputError(f"--size {args.size[0]}x{args.size[1]}: both sides must be >= 1 pixel")
    check_environment()  # the settings every command that computes refuses alike ($MARDINI_BENCH_THREADS...)
    if parse_device(args.device, "--device").type == "meta":  # shapes only: there would be no number
        raise InputError(f"--device={args.device!r}: computes no values; valid: cpu, cuda, cuda:N")


def open_sets(args: argparse.Namespace) -> Tuple[VideoSet, VideoSet]:
    real, fake = VideoSet(args.real, args.frames), VideoSet(args.fake, args.frames)
    for s in (real, fake):
        s.size = args.size
        if metric_info(args.metric).whole_clips and s.is_images:
            raise InputError(f"{s.spec}: holds images; {metric_info(args.metric).label} needs videos [N,T,H,W,3]")
        if min(s.target_size()) < 1:  # a score of no pixels is NaN: a number about nothing
            raise InputError(f"{s.spec}: frames of {s.target_size()[0]}x{s.target_size()[1]} pixels hold nothing to "
                             f"score; expected frames of at least 1x1")
    if not is_distribution(args.metric):
        if len(real) != len(fake):
            raise InputError(f"{args.metric} pairs clips: {args.real} has {len(real)}, {args.fake} has {len(fake)}")
        if real.target_size() != fake.target_size():
            raise InputError(f"{args.metric} compares pixels: {args.real} is {real.target_size()}, "
                             f"{args.fake} is {fake.target_size()}; pass --size HxW")
    return real, fake


def score(metric: Any, real: VideoSet, fake: VideoSet, args: argparse.Namespace) -> MetricResult:
    if is_distribution(args.metric):
        for batch in real.batches(args.batch_size):
            metric.update(real=batch)
        for batch in fake.batches(args.batch_size):
            metric.update(fake=batch)
    else:
        for r, f in zip(real.batches(args.batch_size), fake.batches(args.batch_size)):
            metric.update(r, f)
    result = metric.compute()
    if math.isnan(result.value):  # never a printed "nan" and exit 0
        raise InputError(f"{args.metric} of {args.real} and {args.fake} is NaN: the inputs hold nothing it can score")
    protocol = {**result.protocol, "inputs": {"real": real.describe(), "fake": fake.describe()}}
    return MetricResult(result.value, protocol, result.ci)


def render(name: str, result: MetricResult, as_json: bool) -> str:
    if as_json:
        return json.dumps({"metric": name, **result.to_dict()}, indent=1, default=str)
    p = result.protocol
    ci = f" (95% CI {result.ci[0]:.4f}..{result.ci[1]:.4f})" if result.ci else ""
    keys = ("num_real", "num_fake", "frames", "covariance_ddof", "resize", "frame_protocol", "num_videos")
    detail = ", ".join(f"{k}={p[k]}" for k in keys if p.get(k) is not None)
    return f"{name}: {result.value:.6f}{ci} [{detail}]"


def execute(args: argparse.Namespace) -> int:
    try:
        check_args(args)
        metric = build_metric(args)
        real, fake = open_sets(args)
        result = score(metric, real, fake, args)
    except (InputError, WeightsError, ValueError, FloatingPointError, NoSpaceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:
        print(f"error: {err.filename or err}: permission denied (check its mode and owner)", file=sys.stderr)
        return 2
    print(render(args.metric, result, args.json))
    return 0


COMMAND = Command(add_arguments, execute, __doc__.split("\n\n")[0])


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m mardini_bench.metrics`: the `metrics` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.metrics")
