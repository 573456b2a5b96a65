"""Data command line.

    python -m mardini_bench.data info PATH [--json]          frames, fps and size of every video, or its error
    python -m mardini_bench.data build-davis7 DAVIS_ROOT OUT  VIDIM-Bench DAVIS-7 (357 clips) as PNG folders
    python -m mardini_bench.data build-ucf101-7 UCF_ROOT TESTLIST OUT   VIDIM-Bench UCF101-7 (400 clips)
    python -m mardini_bench.data stats [key=value ...]       latent mean/std of a run config's codec on its data

`info` on a folder exits 1 when any file failed; a bad file given alone, or bad arguments, exit 2 with one
`error:` line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from mardini_bench.args import Command, add_overrides, command_main
from mardini_bench.cli import user_errors
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.data import build_dataset
from mardini_bench.data.folder import video_files
from mardini_bench.data.stats import latent_stats
from mardini_bench.data.video_io import VideoReadError, probe_video
from mardini_bench.data.vidim import build_davis7, build_ucf101_7
from mardini_bench.factory import build_model
from mardini_bench.runtime import configure_threads


def video_info(path: Path) -> List[Dict]:
    """One row per file under `path` (or for `path` itself): its geometry, or its error."""
    rows = []
    for f in [path] if path.is_file() else video_files(path):
        try:
            info = probe_video(f)
            rows.append({"path": str(f), "frames": info.frames, "fps": info.fps, "height": info.height,
                         "width": info.width})
        except VideoReadError as err:
            rows.append({"path": str(f), "error": str(err)})
    return rows


def print_table(rows: List[Dict]) -> None:
    width = max(len(r["path"]) for r in rows)
    print(f"{'path':<{width}}  {'frames':>6}  {'fps':>6}  {'height':>6}  {'width':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['path']:<{width}}  error: {r['error'].removeprefix(r['path'] + ': ')}")
        else:
            print(f"{r['path']:<{width}}  {r['frames']:>6}  {r['fps']:>6.2f}  {r['height']:>6}  {r['width']:>6}")


def cmd_info(args: argparse.Namespace) -> int:
    if not args.path.exists():
        raise VideoReadError(f"{args.path}: no such file or folder")
    rows = video_info(args.path)
    if not rows:
        raise VideoReadError(f"{args.path}: empty folder (no video files)")
    if args.path.is_file() and "error" in rows[0]:  # the one file asked about: its fault is the error line
        raise VideoReadError(rows[0]["error"])
    print(json.dumps(rows, indent=2)) if args.json else print_table(rows)
    return 1 if any("error" in r for r in rows) else 0


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int], None]]:
    """A clip counter on a terminal's stderr, its line ended before whatever follows (a summary, or
    the one `error:` line); nothing when stderr is a file or a pipe."""
    shown = []

    def show(n: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{label}: {n} clips", end="", file=sys.stderr, flush=True)
            shown.append(n)

    try:
        yield show
    finally:
        if shown:
            print(file=sys.stderr)


def check_out(out: Path) -> None:
    """OUT is a dataset folder the build makes (or, with --overwrite, replaces): a file there is someone's
    data, never replaced by a folder of clips; a missing parent is made, one that is a file cannot be."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            where = "" if path == out else f" {path}"
            raise FileExistsError(f"{out}:{where} is a file; OUT must be a folder for the clips (--overwrite "
                                  f"replaces only a folder)")


def cmd_build_davis7(args: argparse.Namespace) -> int:
    check_out(args.out)
    with _progress("DAVIS-7") as progress:
        n = build_davis7(args.davis_root, args.out, overwrite=args.overwrite, progress=progress)
    print(f"{args.out}: {n} DAVIS-7 clips (9 frames, 256x256) and manifest.csv", file=sys.stderr)
    return 0


def cmd_build_ucf101_7(args: argparse.Namespace) -> int:
    check_out(args.out)
    with _progress("UCF101-7") as progress:
        n = build_ucf101_7(args.ucf_root, args.testlist, args.out, overwrite=args.overwrite, crop=args.crop,
                           progress=progress)
    print(f"{args.out}: {n} UCF101-7 clips (9 frames, 256x256) and manifest.csv", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Latent mean and std of the config's codec on its training clips, and the overrides that use them."""
    cfg = apply_overrides(RunConfig(), args.overrides)
    configure_threads()  # the run's thread setting (a bad $MARDINI_BENCH_THREADS is refused before any work)
    codec = build_model(cfg).codec
    data = build_dataset(cfg.data, "train")
    n = min(args.clips, len(data))
    mean, std = latent_stats(codec, data, n)
    print(f"{cfg.model.codec.name} latents of {n} {cfg.data.dataset} train clips: mean {mean:.4f}, std {std:.4f}")
    print(f"model.codec.shift={mean:.4f} model.codec.scale={1 / std:.4f}")
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="frames, fps, height and width of every video under PATH")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    info.set_defaults(run=cmd_info)
    davis = sub.add_parser("build-davis7", help="VIDIM-Bench DAVIS-7 from DAVIS_ROOT/JPEGImages/480p")
    davis.add_argument("davis_root", type=Path)
    davis.add_argument("out", type=Path)
    davis.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    davis.set_defaults(run=cmd_build_davis7)
    ucf = sub.add_parser("build-ucf101-7", help="VIDIM-Bench UCF101-7: first 400 chunks of test split 1")
    ucf.add_argument("ucf_root", type=Path, help="folder holding <Class>/v_*.avi")
    ucf.add_argument("testlist", type=Path, help="the official testlist01.txt")
    ucf.add_argument("out", type=Path)
    ucf.add_argument("--crop", action="store_true", help="centre-crop + linear-light resize (DAVIS-7 style) "
                                                        "instead of TFDS's 256x256 stretch")
    ucf.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    ucf.set_defaults(run=cmd_build_ucf101_7)
    stats = sub.add_parser("stats", help="latent mean/std of a config's codec on its training clips")
    add_overrides(stats, help="dotted run-config overrides, e.g. model=small data.motion=drift")
    stats.add_argument("--clips", type=int, default=2048, help="training clips to measure (default 2048)")
    stats.set_defaults(run=cmd_stats)


@user_errors(VideoReadError, FileExistsError, FileNotFoundError)
def execute(args: argparse.Namespace) -> int:
    return args.run(args)


COMMAND = Command(add_arguments, execute, "Video info, the VIDIM-Bench datasets (DAVIS-7, UCF101-7) as PNG folders, "
                                          "and a codec's latent statistics on a run config's data.")


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m mardini_bench.data`: the `data` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.data")


if __name__ == "__main__":
    sys.exit(main())
