"""The paper's claims, each tested on the grid that re-runs its experiment: one verdict row per claim.

A claim names its grid (the sweep folder's name), the paper's numbers, and how ours are read:

    pairwise    "A beats B" on a task and metric: both variants' means over seeds from the sweep's own
                paired comparisons (significance.csv: paired bootstrap over clips, seeds outer, Holm)
    convergence "A reaches a fixed training loss in fewer steps than B": the steps each seed takes
                (`plots.seed_steps_to_loss`), Welch's t-test over the seeds
    cost        "A costs less than B" in sampling latency or peak memory: the ratio of the variants'
                costs (`results.variant_costs`). A run times its sampling once (the fastest of a few
                repeats), so there is no test: the ratio must clear COST_MARGIN either way

Verdict: *reproduced* when ours goes the paper's way and the test says significant at 0.05 (for a
cost: the ratio is below 1 - COST_MARGIN);
*contradicted* when significant the other way; otherwise *inconclusive*, with the direction said.
The report of a sweep whose name is a claim's grid shows its rows ("Paper claims"); the same rows,
with the frozen numbers, come from a reference folder (`results/reference/<grid>`).

The README's claims table is rendered from those frozen rows, one row per claim and one evidence and
verdict column per scale (SCALES), between two marker comments:

    python -m mardini_bench.analysis.claims                     # print the table
    python -m mardini_bench.analysis.claims --check README.md   # exit 1 if the README's table differs
    python -m mardini_bench.analysis.claims --write README.md   # put the table there in place
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from mardini_bench.args import Command, UsageError, command_main
from mardini_bench.io import write_text

ALPHA = 0.05
COST_MARGIN = 0.1  # a cost ratio within 1 +- this reads inconclusive (the spread of repeated timings)
CLAIMS_FILE = "claims.csv"  # the verdict rows, frozen beside a reference's results
VERDICT_COLUMNS = ["claim", "paper", "ours", "test", "verdict"]


@dataclass(frozen=True)
class Claim:
    """What every claim names: the grid that tests it, its wording and the paper's numbers."""

    grid: str
    claim: str
    paper: str


@dataclass(frozen=True)
class Pairwise(Claim):
    """`better` beats `worse` on `metric` of `task`; each side picks one variant by its axis values."""

    better: Mapping[str, str]
    worse: Mapping[str, str]
    task: str = "interpolation"
    metric: str = "fvd"


@dataclass(frozen=True)
class Convergence(Claim):
    """`faster` reaches the fixed training loss in fewer steps than `slower` (labels of the loss groups)."""

    faster: Mapping[str, str]
    slower: Mapping[str, str]


@dataclass(frozen=True)
class CostRatio(Claim):
    """`cheaper` costs less than `dearer` in `column` (latency_sample_s or peak_mem_mb of a run)."""

    cheaper: Mapping[str, str]
    dearer: Mapping[str, str]
    column: str = "latency_sample_s"


COST_NAMES = {"latency_sample_s": ("sampling latency", "s"), "peak_mem_mb": ("peak memory", "MB")}
ST, T = {"generator.attention": "spatiotemporal"}, {"generator.attention": "temporal"}
FULL, LOW = {"planner.downsample": "1"}, {"planner.downsample": "2"}
MAR_DM = {"planner.name": "mar", "generator.name": "dit"}
BIGGER_PLANNER = "DAVIS FVD 103 (MAR-3B) vs 224 (MAR-1B)"  # Table 2, MAR+DM rows
CLAIMS = (
    Pairwise("table2", "Table 2: MAR+DM beats DM-only", "DAVIS FVD 224 vs 321 (UCF101 258 vs 383)",
             {**MAR_DM, "planner.depth": "4"}, {"planner.name": "none"}),
    Pairwise("table2", "Table 2: DM-only beats MAR-only", "DAVIS FVD 321 vs 428 (UCF101 383 vs 742)",
             {"planner.name": "none"}, {"generator.name": "none", "planner.depth": "4"}),
    Pairwise("table2", "Table 2: a bigger planner helps MAR+DM", BIGGER_PLANNER,
             {**MAR_DM, "planner.depth": "8"}, {**MAR_DM, "planner.depth": "4"}),
    Pairwise("table2", "Table 2: a bigger planner helps MAR-only", "DAVIS FVD 373 (MAR-3B) vs 428 (MAR-1B)",
             {"generator.name": "none", "planner.depth": "8"}, {"generator.name": "none", "planner.depth": "4"}),
    # The planner_depth grid reads the same claim on four depths of one width: the deepest against
    # the paper's pairing (twice the depth) and against the shallowest
    Pairwise("planner_depth", "Table 2: a bigger planner helps MAR+DM (depth 8 vs 4)",
             BIGGER_PLANNER, {"planner.depth": "8"}, {"planner.depth": "4"}),
    Pairwise("planner_depth", "Table 2: a bigger planner helps MAR+DM (depth 8 vs 1)",
             BIGGER_PLANNER, {"planner.depth": "8"}, {"planner.depth": "1"}),
    # "Near-optimal with few steps" read as: 10 steps score no worse than 100 (a significant win for
    # 10 also reproduces it; equivalence itself is not tested, so a tie reads inconclusive)
    Pairwise("fig6a_ddim_steps", "Fig. 6a: a few DDIM steps (10) do as well as many (100)",
             "FVD near-optimal from few steps on DAVIS-7 and UCF101-7 (plot, no table)",
             {"diffusion.sample_steps": "10"}, {"diffusion.sample_steps": "100"}),
    Convergence("fig6c_identity", "Fig. 6c: Identity Attention speeds convergence",
                "without it the DM fails to converge in the first 10k steps (no table)",
                {"planner.identity_attention": "True", "generator.identity_attention": "True"},
                {"planner.identity_attention": "False", "generator.identity_attention": "False"}),
    # Table 3 (512², 25 DDIM steps, one A100): the same comparisons on the CPU grid's 32² clips
    CostRatio("table3", "Table 3: asymmetric resolution cuts sampling latency (9 frames)",
              "17.91 s vs 25.09 s (x0.71)", {**ST, **LOW, "data.frames": "9"}, {**ST, **FULL, "data.frames": "9"}),
    CostRatio("table3", "Table 3: asymmetric attention cuts sampling latency (13 frames)",
              "6.05 s vs 34.58 s (x0.17), both with asymmetric resolution",
              {**T, **LOW, "data.frames": "13"}, {**ST, **LOW, "data.frames": "13"}),
    CostRatio("table3", "Table 3: both asymmetries cut peak memory (13 frames)",
              "42.57 GB vs out of memory on 80 GB", {**T, **LOW, "data.frames": "13"},
              {**ST, **FULL, "data.frames": "13"}, column="peak_mem_mb"),
    # One GPU (ablations/gpu_*.toml): the same claims on the faithful `gpu` preset, whose planner has 8
    # blocks (16 for the bigger one). The wording is the CPU rows', so each claim is one table row.
    Pairwise("gpu_table2", "Table 2: MAR+DM beats DM-only", "DAVIS FVD 224 vs 321 (UCF101 258 vs 383)",
             {**MAR_DM, "planner.depth": "8"}, {"planner.name": "none"}),
    Pairwise("gpu_table2", "Table 2: DM-only beats MAR-only", "DAVIS FVD 321 vs 428 (UCF101 383 vs 742)",
             {"planner.name": "none"}, {"generator.name": "none"}),
    Pairwise("gpu_table2", "Table 2: a bigger planner helps MAR+DM", BIGGER_PLANNER,
             {**MAR_DM, "planner.depth": "16"}, {**MAR_DM, "planner.depth": "8"}),
    Pairwise("gpu_fig6", "Fig. 6a: a few DDIM steps (10) do as well as many (100)",
             "FVD near-optimal from few steps on DAVIS-7 and UCF101-7 (plot, no table)",
             {"diffusion.sample_steps": "10"}, {"diffusion.sample_steps": "100"}),
    Convergence("gpu_fig6", "Fig. 6c: Identity Attention speeds convergence",
                "without it the DM fails to converge in the first 10k steps (no table)",
                {"planner.identity_attention": "True", "generator.identity_attention": "True"},
                {"planner.identity_attention": "False", "generator.identity_attention": "False"}),
)


def claims_for(grid: str) -> List[Claim]:
    return [c for c in CLAIMS if c.grid == grid]


def parse_label(label: str) -> Dict[str, str]:
    """'planner.depth=4, planner.name=mar' -> {'planner.depth': '4', 'planner.name': 'mar'}."""
    pairs = [part.strip().partition("=") for part in str(label).split(",")]
    return {key.removeprefix("model."): value for key, _, value in pairs if key}


def _matches(label: str, pick: Mapping[str, str]) -> bool:
    axes = parse_label(label)
    return all(axes.get(key) == value for key, value in pick.items())


def _pick(values: Mapping[str, object], pick: Mapping[str, str]) -> Optional[object]:
    """The value of the first variant label in `values` that `pick` matches; None when none does."""
    return next((v for label, v in values.items() if _matches(label, pick)), None)


def _verdict(right_way: bool, significant: bool) -> str:
    if significant:
        return "reproduced" if right_way else "contradicted"
    return f"inconclusive ({'right' if right_way else 'wrong'} direction)"


def pairwise_row(claim: Pairwise, comparisons: pd.DataFrame) -> Optional[Dict[str, str]]:
    """The claim's row from the sweep's pairwise comparisons; None when the sweep lacks either variant."""
    rows = comparisons[(comparisons["task"] == claim.task) & (comparisons["metric"] == claim.metric)]
    for _, row in rows.iterrows():
        a, b = str(row["variant_a"]), str(row["variant_b"])
        if _matches(a, claim.better) and _matches(b, claim.worse):
            better, worse, n_better, n_worse = row["mean_a"], row["mean_b"], row["seeds_a"], row["seeds_b"]
        elif _matches(b, claim.better) and _matches(a, claim.worse):
            better, worse, n_better, n_worse = row["mean_b"], row["mean_a"], row["seeds_b"], row["seeds_a"]
        else:
            continue
        from mardini_bench.analysis.significance import lower_is_better  # the metric registry loads torch

        right_way = better < worse if lower_is_better(claim.metric) else better > worse
        p = float(row["p_holm"])
        return {"claim": claim.claim, "paper": claim.paper,
                "ours": f"{claim.task} {claim.metric.upper()} {better:.4g} vs {worse:.4g} "
                        f"({int(n_better)} vs {int(n_worse)} seeds)",
                "test": f"paired bootstrap, Holm p {'< 1/resamples' if p == 0 else f'= {p:.3g}'}",
                "verdict": _verdict(right_way, p < ALPHA)}
    return None


def convergence_row(claim: Convergence, level: float, steps: Mapping[str, Sequence[float]]) -> Optional[Dict[str, str]]:
    """The claim's row from the steps each seed took to reach `level`; a seed that never did counts as
    the slowest possible (it is left out of the mean, and the row says how many reached it)."""
    fast, slow = _pick(steps, claim.faster), _pick(steps, claim.slower)
    if fast is None or slow is None:
        return None
    f, s = (np.array([x for x in v if not math.isnan(x)]) for v in (fast, slow))
    if len(f) < 2 or len(s) < 2:
        return {"claim": claim.claim, "paper": claim.paper, "test": "-",
                "ours": f"reached loss {level:.4g} in {len(f)}/{len(fast)} vs {len(s)}/{len(slow)} seeds",
                "verdict": "inconclusive (too few seeds reached the level)"}
    p = float(stats.ttest_ind(f, s, equal_var=False).pvalue)
    return {"claim": claim.claim, "paper": claim.paper,
            "ours": f"steps to loss {level:.4g}: {f.mean():.0f} vs {s.mean():.0f} "
                    f"({len(f)}/{len(fast)} vs {len(s)}/{len(slow)} seeds)",
            "test": f"Welch t over seeds, p = {p:.3g}", "verdict": _verdict(f.mean() < s.mean(), p < ALPHA)}


def cost_row(claim: CostRatio, costs: Mapping[str, float]) -> Optional[Dict[str, str]]:
    """The claim's row from the variants' costs ({label: cost}); None when the sweep lacks either."""
    cheap, dear = _pick(costs, claim.cheaper), _pick(costs, claim.dearer)
    if cheap is None or dear is None or not dear > 0 or math.isnan(cheap):
        return None
    ratio = cheap / dear
    name, unit = COST_NAMES.get(claim.column, (claim.column, ""))
    if abs(ratio - 1) < COST_MARGIN:
        verdict = f"inconclusive (within {COST_MARGIN:.0%} of equal)"
    else:
        verdict = "reproduced" if ratio < 1 else "contradicted"
    return {"claim": claim.claim, "paper": claim.paper,
            "ours": f"{name} {cheap:.4g} {unit} vs {dear:.4g} {unit} (x{ratio:.2f})",
            "test": f"none: one measurement per run; the ratio must clear 1 +- {COST_MARGIN}", "verdict": verdict}


def claim_rows(grid: str, comparisons: pd.DataFrame, timed: Optional[tuple] = None,
               costs: Optional[Mapping[str, Mapping[str, float]]] = None) -> pd.DataFrame:
    """Every claim of `grid` this sweep can answer: `comparisons` (significance.csv), `timed`
    (`plots.seed_steps_to_loss`: level and steps per variant, None when the sweep has no such curves)
    and `costs` ({column: `results.variant_costs`})."""
    rows = []
    for claim in claims_for(grid):
        if isinstance(claim, Pairwise) and len(comparisons):
            rows.append(pairwise_row(claim, comparisons))
        elif isinstance(claim, Convergence) and timed is not None:
            rows.append(convergence_row(claim, *timed))
        elif isinstance(claim, CostRatio) and costs and claim.column in costs:
            rows.append(cost_row(claim, costs[claim.column]))
    return pd.DataFrame([r for r in rows if r is not None], columns=VERDICT_COLUMNS)


# ----------------------------------------------------------------------------------------------
# The README's claims table, from the frozen references
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """One evidence column and one verdict column of the table: the `<grid>/claims.csv` files of `root`
    whose grid name starts with `prefix` (and with no other scale's prefix). `optional`: a scale with no
    frozen claims yet reads "not run" in every row instead of failing."""

    label: str
    root: Path | str
    prefix: str = ""
    optional: bool = False


SCALES: Tuple[Scale, ...] = (Scale("CPU", "results/reference"),
                             Scale("GPU", "results/reference", prefix="gpu_", optional=True))
TABLE_BEGIN, TABLE_END = "<!-- claims:begin -->", "<!-- claims:end -->"


class ClaimsTableError(ValueError):
    """A reference folder without claims, a claims.csv that cannot be read, or a file without the markers."""


def frozen_verdicts(root: Path | str, prefix: str = "", exclude: Sequence[str] = (),
                    optional: bool = False) -> Dict[str, Dict[str, str]]:
    """claim -> its frozen row, with `grid` (the folder's name), from every `root/<grid>/claims.csv` whose
    grid starts with `prefix` and with none of `exclude`; none found is an error unless `optional`."""
    rows: Dict[str, Dict[str, str]] = {}
    paths = [p for p in sorted(Path(root).glob(f"{prefix}*/{CLAIMS_FILE}"))
             if not any(p.parent.name.startswith(other) for other in exclude)]
    if not paths and not optional:
        raise ClaimsTableError(f"{root}: no {prefix}*/{CLAIMS_FILE} there; a reference folder gets one from "
                               f"`python -m mardini_bench.report SWEEP --save-reference DIR`")
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in VERDICT_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ClaimsTableError(f"{path}: no column {', '.join(missing)}; expected {', '.join(VERDICT_COLUMNS)}")
            rows.update({row["claim"]: {**row, "grid": path.parent.name} for row in reader})
    return rows


def scale_verdicts(scales: Sequence[Scale]) -> List[Tuple[str, Dict[str, Dict[str, str]]]]:
    """(label, frozen rows) per scale; a scale without a prefix leaves out the folders the others' prefixes name."""
    prefixes = [s.prefix for s in scales if s.prefix]
    return [(s.label, frozen_verdicts(s.root, s.prefix, [p for p in prefixes if p != s.prefix and not s.prefix],
                                      s.optional)) for s in scales]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_table(scales: Sequence[Scale] = SCALES) -> str:
    """The Markdown table: claim, the paper's numbers, then per scale our evidence (grid, numbers, test)
    and verdict. Claims follow CLAIMS' order; a claim a scale has not run reads "not run" there."""
    by_scale = scale_verdicts(scales)
    order = list(dict.fromkeys(c.claim for c in CLAIMS))
    found = {claim for _, rows in by_scale for claim in rows}
    claims = [c for c in order if c in found] + sorted(found - set(order))
    head = ["claim", "paper"] + [h for label, _ in by_scale for h in (f"{label} scale: ours (grid; test)",
                                                                      f"{label} verdict")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for claim in claims:
        paper = next(rows[claim]["paper"] for _, rows in by_scale if claim in rows)
        cells = [claim, paper]
        for _, rows in by_scale:
            row = rows.get(claim)
            cells += ([f"`{row['grid']}`: {row['ours']}; {row['test']}", row["verdict"]] if row else ["not run", "–"])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def table_span(text: str, name: str) -> Tuple[int, int]:
    """Where the table lies in `text`: the offsets just after the begin marker's line and at the end marker."""
    begin, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ClaimsTableError(f"{name}: no claims table between {TABLE_BEGIN} and {TABLE_END} (each on its own line)")
    start = text.find("\n", begin) + 1
    return start, end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", action="append", metavar="LABEL=DIR",
                        help="a scale and its reference folder, repeatable (default: "
                             + ", ".join(f"{s.label}={s.root}/{s.prefix}*" for s in SCALES)
                             + "; a folder's grids with a scale's prefix belong to that scale)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="FILE", help="exit 1 if FILE's table (between the markers) differs")
    mode.add_argument("--write", metavar="FILE", help="replace FILE's table (between the markers) in place")


def execute(args: argparse.Namespace) -> int:
    pairs = [tuple(s.split("=", 1)) for s in args.scale or []]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise UsageError(f"--scale takes LABEL=DIR, e.g. CPU=results/reference; got {' '.join(args.scale)}")
    scales = [Scale(label, root) for label, root in pairs] if pairs else list(SCALES)
    target = args.check or args.write
    try:
        table = render_table(scales)
        if target is None:
            print(table, end="")
            return 0
        text = Path(target).read_text(encoding="utf-8")
        start, end = table_span(text, target)
    except ClaimsTableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as err:
        print(f"error: {target}: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
        return 2
    if text[start:end] == table:
        print(f"{target}: the claims table is up to date")
        return 0
    if args.check:
        print(f"error: {target}: the claims table differs from the frozen references; regenerate it with "
              f"`python -m mardini_bench.analysis.claims --write {target}`", file=sys.stderr)
        return 1
    write_text(target, text[:start] + table + text[end:])
    print(f"wrote the claims table into {target}")
    return 0


COMMAND = Command(add_arguments, execute, "The README's claims table, rendered from the frozen claims.csv files.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m mardini_bench.analysis.claims`: the `claims` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.analysis.claims")


if __name__ == "__main__":
    sys.exit(main())
