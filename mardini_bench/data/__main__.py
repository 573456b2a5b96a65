"""python -m mardini_bench.data info PATH [--json]: frames, fps and size of every video, or its error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

from mardini_bench.cli import user_errors
from mardini_bench.data.video_io import SIDECAR_EXTENSIONS, VideoReadError, probe_video


def video_info(path: Path) -> List[dict]:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() not in SIDECAR_EXTENSIONS)
    rows = []
    for f in files:
        try:
            info = probe_video(f)
            rows.append({"path": str(f), "frames": info.frames, "fps": info.fps, "height": info.height,
                         "width": info.width})
        except VideoReadError as err:
            rows.append({"path": str(f), "error": str(err)})
    return rows


@user_errors(VideoReadError)
def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mardini_bench.data")
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="frames, fps, height and width of every video under PATH")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.path.exists():
        raise VideoReadError(f"{args.path}: no such file or folder")
    rows = video_info(args.path)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(r["error"] if "error" in r else
                  f"{r['path']}: {r['frames']} frames, {r['fps']:.2f} fps, {r['height']}x{r['width']}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
