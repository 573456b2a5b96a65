"""`python -m mardini_bench.cost table3 | memory`: paper Table 3 FLOPs and memory estimates for MarDini-S;
training memory per GPU under DDP or FSDP (`cost/memory.py`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from mardini_bench.args import Command, add_overrides, command_main
from mardini_bench.cli import user_errors
from mardini_bench.cost import CostError
from mardini_bench.cost.memory import PARALLEL, estimate, format_estimate
from mardini_bench.cost.table3 import PLANNER_LATENT_SIDE, table3_rows
from mardini_bench.presets import PAPER_PARAMS
from mardini_bench.io import atomic_file


def _fmt(x: Optional[float], width: int) -> str:
    """Right-aligned 2-decimal cell; "–" where the paper has no number (OOM)."""
    return f"{'–':>{width}}" if x is None else f"{x:>{width}.2f}"


def print_table3(rows: list) -> None:
    """Human-readable Table 3: our FLOPs and memory estimates beside the paper's latency and memory."""
    print("MarDini-S on meta, per video: planner once + 25 DDIM generator calls, 1 reference frame; "
          "memory: fp32 params + bf16 activations")
    print(f"{'res':>4} {'row':<13} {'P grid':>6} {'TFLOPs':>8} {'P/G TFLOPs':>13} {'mem fused':>9} {'mem math':>9}"
          f" {'paper s':>8} {'paper GB':>8} | {'FLOPs x':>7} {'paper lat x':>11} {'fused x':>7} {'math x':>6}"
          f" {'paper mem x':>11}")
    for r in rows:
        print(f"{r['resolution']:>4} {r['row_id']:<13} {r['planner_latent']:>4}^2 {r['flops'] / 1e12:>8.1f} "
              f"{r['flops_planner'] / 1e12:>6.1f}/{r['flops_generator'] / 1e12:<6.1f} {r['mem_fused_gb']:>8.1f}G "
              f"{r['mem_math_gb']:>8.1f}G {_fmt(r['paper_latency_s'], 8)} {_fmt(r['paper_mem_gb'], 8)} | "
              f"{r['flops_ratio']:>7.2f} {_fmt(r['paper_latency_s_ratio'], 11)} {r['mem_fused_gb_ratio']:>7.2f} "
              f"{r['mem_math_gb_ratio']:>6.2f} {_fmt(r['paper_mem_gb_ratio'], 11)}")
    print("ratios (x) are to the first row (no_asym_9) at the same resolution; paper: 1xA100, bf16")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="command", required=True)
    t3 = sub.add_parser("table3", help="paper Table 3 FLOPs and memory estimates for MarDini-S on meta")
    t3.add_argument("--json", action="store_true", help="print the rows as JSON")
    t3.add_argument("--csv", default=None, help="also write the rows to this CSV file (atomically)")
    t3.add_argument("--paper-tables", default=None, help="paper_tables.csv (default: results/paper/)")
    t3.add_argument("--resolutions", type=int, nargs="+", default=[256, 512], help="output sides in px")
    mem = sub.add_parser("memory", help="training memory per GPU of a preset under ddp or fsdp")
    mem.add_argument("preset", help=f"a model preset, e.g. {', '.join(PAPER_PARAMS)}")
    add_overrides(mem, help="dotted overrides, e.g. train.batch_size=720")
    mem.add_argument("--gpus", type=int, default=1, help="processes (one per GPU) sharing the global batch")
    mem.add_argument("--parallel", choices=PARALLEL, default="fsdp")
    mem.add_argument("--micro-batch", type=int, default=None,
                     help="clips per forward on each GPU (default: its whole share of train.batch_size)")
    mem.add_argument("--activation-checkpointing", action="store_true")
    mem.add_argument("--resolution", type=int, default=256, help="frame side in px (default: the paper's 256)")
    mem.add_argument("--frames", type=int, default=9, help="frames per clip (default: the paper's 9)")
    mem.add_argument("--json", action="store_true", help="print the estimate as JSON")


@user_errors(CostError)
def execute(args: argparse.Namespace) -> None:
    _table3(args) if args.command == "table3" else _memory(args)


COMMAND = Command(add_arguments, execute, "Cost accounting: the paper's Table 3 (FLOPs and memory of MarDini-S at "
                                          "paper scale), and training memory per GPU under DDP or FSDP.")


def main(argv: Optional[list] = None) -> int:
    """`python -m mardini_bench.cost`: the `cost` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.cost")


# Smallest valid value of each numeric flag, checked before any work so the error names the flag (not the
# config field it sets, nor a quotient of it: "-2 does not divide 8").
MINIMUM = {"gpus": 1, "micro_batch": 1, "resolution": 1, "frames": 2}


def check_flags(args: Any) -> None:
    for name, low in MINIMUM.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise CostError(f"--{name.replace('_', '-')}: got {value}, must be >= {low}")
    side = 8 * PLANNER_LATENT_SIDE
    bad = [r for r in getattr(args, "resolutions", None) or [] if r < 1]
    if bad:
        raise CostError(f"--resolutions: got {' '.join(map(str, bad))}, must be positive multiples of {side} "
                        f"(the planner's {side} px), e.g. {side} {2 * side}")


def _memory(args: Any) -> None:
    check_flags(args)
    overrides = [f"data.resolution={args.resolution}", f"data.frames={args.frames}", *args.overrides]
    row = estimate(args.preset, args.gpus, args.parallel, args.micro_batch, args.activation_checkpointing, overrides)
    print(json.dumps(row, indent=2) if args.json else format_estimate(row))


def _table3(args: Any) -> None:
    check_flags(args)
    rows = table3_rows(args.paper_tables, args.resolutions)
    if args.csv:
        with atomic_file(Path(args.csv)) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table3(rows)
