"""Print planner and generator parameter counts for a preset (built on the meta device).

    python -m mardini_bench.params mardini_s_st
    python -m mardini_bench.params small model.planner.depth=8 --json
    python -m mardini_bench.params --all
"""

from __future__ import annotations

import argparse
import json
from typing import Dict, List

from mardini_bench.args import Command, UsageError, add_overrides, command_main
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


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("preset", nargs="?", help=f"one of: {', '.join(MODEL_PRESETS.list())}")
    add_overrides(ap, help="dotted overrides, e.g. model.planner.depth=4")
    ap.add_argument("--all", action="store_true", help="every registered preset")
    ap.add_argument("--json", action="store_true")


@user_errors()
def execute(args: argparse.Namespace) -> None:
    if not args.all and not args.preset:
        raise UsageError("give a preset name or --all")
    presets = MODEL_PRESETS.list() if args.all else [args.preset]
    rows = {p: count_params(p, args.overrides) for p in presets}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':<14} {'planner':>10} {'generator':>10} {'total':>10}")
    for name, c in rows.items():
        print(f"{name:<14} {_human(c['planner']):>10} {_human(c['generator']):>10} {_human(c['total']):>10}")


COMMAND = Command(add_arguments, execute, __doc__.splitlines()[0])


def main(argv: List[str] | None = None) -> int:
    """`python -m mardini_bench.params`: the `params` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.params")
