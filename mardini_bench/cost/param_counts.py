"""Print planner and generator parameter counts for a preset (built on the meta device).

    python -m mardini_bench.params mardini_s_st
    python -m mardini_bench.params small model.planner.depth=8 --json
    python -m mardini_bench.params --all
"""

from __future__ import annotations

import json
from typing import Dict, List

from mardini_bench.args import ArgumentParser
from mardini_bench.cli import user_errors
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.factory import build_model
from mardini_bench.registry import MODEL_PRESETS


def count_params(preset: str, overrides: List[str] = ()) -> Dict[str, int]:
    """Planner/generator parameter counts of `preset` with dotted `model.` overrides, on meta."""
    cfg = apply_overrides(RunConfig(), [f"model={preset}", *overrides])
    counts = build_model(cfg, device="meta").num_params()
    counts["total"] = counts["planner"] + counts["generator"]
    return counts


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


@user_errors()
def main(argv: List[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m mardini_bench.params", description=__doc__.splitlines()[0])
    ap.add_argument("preset", nargs="?", help=f"one of: {', '.join(MODEL_PRESETS.list())}")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.planner.depth=4")
    ap.add_argument("--all", action="store_true", help="every registered preset")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.all and not args.preset:
        ap.error("give a preset name or --all")
    presets = MODEL_PRESETS.list() if args.all else [args.preset]
    rows = {p: count_params(p, args.overrides) for p in presets}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':<14} {'planner':>10} {'generator':>10} {'total':>10}")
    for name, c in rows.items():
        print(f"{name:<14} {_human(c['planner']):>10} {_human(c['generator']):>10} {_human(c['total']):>10}")


if __name__ == "__main__":
    main()
