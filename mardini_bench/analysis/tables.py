"""Result tables in Markdown, LaTeX and CSV, shaped like the paper's Tables 2, 3 and 4.

Cells read `mean ± 95% CI` over seeds; **bold** is the best model variant of its column and
`†` marks a variant that a paired bootstrap (Holm-corrected) finds different from that best one.
`▽` marks a variant whose mean is worse than a trivial baseline's in that column; such a cell is
never bold, so a column whose best variant loses to a baseline has no bold cell.
Every task table carries the baseline rows, and a failed run shows as FAILED with its message,
never as a number. The paper's own numbers (`results/paper/paper_tables.csv`) sit beside ours.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd

from mardini_bench.cost.paper import PAPER_TABLES_ENV, load_paper  # noqa: F401  (report reads them here)
from mardini_bench.io import atomic_file, write_text
from mardini_bench.metrics.info import metric_info, metric_names
from mardini_bench.analysis.results import (COST_COLUMNS, PROTOCOL_IGNORE, PROTOCOL_PREFIX, axis_columns,
                                            t_interval)

BEATEN = "▽"  # a model variant worse than a trivial baseline of its column
LEGEND = ("Cells: mean ± 95% t-interval over seeds (n = finished seeds). **Bold**: best model variant "
          f"of the column, and only if it beats every trivial baseline there. {BEATEN}: the variant's mean "
          "over seeds is worse than a trivial baseline's (a `baseline:` row, e.g. copy_nearest) on the same "
          "column, by the metric's direction (FVD/FID: lower is better; PSNR/SSIM: higher); a "
          f"{BEATEN} cell is never bold, so a column whose best variant loses to a baseline has no bold cell. "
          "†: differs from the best model variant (paired bootstrap over eval clips, seeds outer, "
          "Holm-corrected p < 0.05). n/a: no finished run. latency/sample: fastest of 5 samplings of one "
          "video, timed inside each run with the run's threads (results.csv: `threads`), and for a variant the "
          "fastest of its seeds; the runs of a local sweep share the cores, so for clean latencies run one "
          "at a time (`--array-parallelism 1`) or use benchmarks/bench_sampling.py.")


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------
def human(x: float, unit: str = "") -> str:
    """1.3e9 -> '1.30G'; NaN -> '–'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{suffix}{unit}"
    return f"{x:.3g}{unit}"


def number(value: float, metric: str) -> str:
    """A metric value with the metric's decimals: number(224.071, 'fvd') -> '224.1'."""
    return f"{value:.{metric_info(metric).decimals}f}"


def cell(mean: float, ci: float, metric: str, best: bool = False, differs: float = math.nan,
         beaten_by: Optional[str] = None) -> str:
    """'224.07 ± 3.10': bold when best, † when significantly different from the best, ▽ when
    `beaten_by` names a baseline the variant is worse than (then never bold, even when best)."""
    if mean is None or math.isnan(mean):
        return "n/a"
    beaten = isinstance(beaten_by, str) and bool(beaten_by)  # NaN/None: not beaten
    text = number(mean, metric) + ("" if ci is None or math.isnan(ci) else f" ± {number(ci, metric)}")
    text = f"**{text}**" if best and not beaten else text
    return text + ("†" if differs == 1.0 else "") + (BEATEN if beaten else "")


def marked_cell(row: pd.Series, metric: str, ranked: bool = True) -> str:
    """A model variant's cell from a `mark_best` row with its marks: bold, † and ▽; `ranked=False`
    (a column shown only for context) leaves out bold and † but keeps ▽."""
    return cell(row["mean"], row["ci95"], metric, ranked and bool(row["best"]),
                row["differs_from_best"] if ranked else math.nan, row["beaten_by"])


def markdown(df: pd.DataFrame) -> str:
    """GitHub Markdown table of a frame's string values (index dropped)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def latex(df: pd.DataFrame, caption: str) -> str:
    """booktabs LaTeX tabular; Markdown bold, † and ▽ become \\textbf, \\dag and $\\bigtriangledown$."""
    body = df.map(lambda v: _latex_cell(str(v)))
    header = [_latex_cell(str(c)) for c in df.columns]
    return body.style.hide(axis="index").relabel_index(header, axis="columns").to_latex(
        caption=_latex_cell(caption), hrules=True, position="t")


def _latex_cell(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"),
                 ("±", "$\\pm$"), ("†", "\\dag{}"), (BEATEN, "$\\bigtriangledown$"), ("–", "--"), ("²", "$^2$"),
                 ("→", "$\\to$")):
        text = text.replace(a, b)
    while text.count("**") >= 2:
        text = text.replace("**", "\\textbf{", 1).replace("**", "}", 1)
    return text


def _metrics(df: pd.DataFrame) -> List[str]:
    present = set(df["metric"].dropna().unique())
    return [m for m in metric_names() if m in present] + sorted(present - set(metric_names()))


def label(metric: str) -> str:
    """A metric's column header (its registered label: "FVD")."""
    return metric_info(metric).label


def _tasks(df: pd.DataFrame) -> List[str]:
    return sorted(t for t in df["task"].dropna().unique())


def _cost_cells(row: pd.Series) -> Dict[str, str]:
    return {"params P": human(row["params_planner"]), "params G": human(row["params_generator"]),
            "FLOPs/train step": human(row["flops_train_step"]), "FLOPs/sample": human(row["flops_sample"]),
            "latency/sample": human(row["latency_sample_s"], " s"), "peak mem": human(row["peak_mem_mb"], " MB")}


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------
def runs_table(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Every run of the sweep for one task (FAILED runs named, with their message), then baselines."""
    axes, metrics = axis_columns(df), _metrics(df)
    rows = []
    for run_id, group in df.groupby("run_id", sort=True):
        first = group.iloc[0]
        values = group[(group["task"] == task) & (group["method"] == "model")].set_index("metric")["value"]
        status = first["status"] if first["status"] == "DONE" else f"{first['status']}: {first['error']}"
        row = {"run": run_id, "status": status, "seed": first["seed"], **{a: first[a] for a in axes}}
        row.update({label(m): cell(values.get(m, math.nan), math.nan, m) for m in metrics})
        rows.append({**row, **_cost_cells(first)})
    return pd.DataFrame(rows + _baseline_rows(df, task, metrics, axes)).fillna("")


def _baseline_rows(df: pd.DataFrame, task: str, metrics: Sequence[str], axes: Sequence[str]) -> List[dict]:
    """Baselines do not depend on the model, so one row each: mean ± CI over the runs that scored them.

    Within one sweep every run scores them on the same clips, so the values agree and the cell is a
    plain number: a '± 0' would suggest a spread over seeds that was never measured."""
    rows = []
    base = df[(df["task"] == task) & (df["method"] != "model")]
    for method, group in base.groupby("method", sort=True):
        row = {"run": f"baseline: {method}", "status": "baseline", "seed": "–", **{a: "–" for a in axes}}
        for m in metrics:
            values = group[group["metric"] == m]["value"]
            ci = t_interval(values)
            row[label(m)] = cell(ci["mean"], None if values.dropna().nunique() <= 1 else ci["ci95"], m)
        rows.append(row)
    return rows


def summary_table(marked: pd.DataFrame, df: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per model variant (mean ± CI over seeds, best/†/▽ marks, cost), then the baselines."""
    part = marked[(marked["task"] == task) & (marked["method"] == "model")]
    metrics = _metrics(df)
    rows = []
    for variant, group in part.groupby("variant", sort=False):
        by, first = group.set_index("metric"), group.iloc[0]
        row = {"variant": variant, "seeds": f"{int(first['n'])}/{int(first['runs'])}"}
        for m in metrics:
            r = by.loc[m] if m in by.index else None
            row[label(m)] = "n/a" if r is None else marked_cell(r, m)
        rows.append({**row, **_cost_cells(first)})
    base = [{"variant": r["run"], "seeds": "–", **{label(m): r[label(m)] for m in metrics}}
            for r in _baseline_rows(df, task, metrics, [])]
    return pd.DataFrame(rows + base).fillna("")


# ----------------------------------------------------------------------------------------------
# Paper-shaped tables (Tables 2, 3, 4) with the paper's numbers beside ours
# ----------------------------------------------------------------------------------------------
def paper_table(paper: pd.DataFrame, table: str) -> pd.DataFrame:
    """One paper table as printed: rows by row_label, value cells (or the note, e.g. OOM, if empty)."""
    part = paper[paper["table"] == table]
    shown = part.assign(shown=[v if v else (n.split(": ")[-1] if n else "–") for v, n in zip(part["value"], part["note"])])
    out = shown.pivot(index="row_label", columns="column", values="shown")
    out = out.loc[list(dict.fromkeys(part["row_label"])), list(dict.fromkeys(part["column"]))]
    return out.reset_index().rename(columns={"row_label": "paper row"})


def _model_rows(marked: pd.DataFrame, task: Optional[str] = None) -> pd.DataFrame:
    part = marked[marked["method"] == "model"]
    return part if task is None else part[part["task"] == task]


def _role(planner: object, generator: object) -> str:
    return ("mar" if planner not in (None, "none") else "") + ("_dm" if generator not in (None, "none") else "")


_PAPER_T2 = {"mar": ["mar_1b_only", "mar_3b_only"], "_dm": ["dm_0.3b_only"], "mar_dm": ["mar_1b_dm_0.3b", "mar_3b_dm_0.3b"]}


def table2(marked: pd.DataFrame, paper: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Planner x generator (Table 2): FVD per task; the paper row of the same role and size rank beside."""
    fvd = _model_rows(marked)[lambda d: d["metric"] == "fvd"]
    rows = []
    for variant, group in fvd.groupby("variant", sort=False):
        first = group.iloc[0]
        row = {"variant": variant, "Planning": "–" if first["planner"] in (None, "none") else f"MAR-{human(first['params_planner'])}",
               "Generation": "–" if first["generator"] in (None, "none") else f"DM-{human(first['params_generator'])}",
               "_role": _role(first["planner"], first["generator"]), "_size": first["params_planner"]}
        for _, r in group.iterrows():
            row[f"{r['task']} FVD"] = marked_cell(r, "fvd")
        rows.append(row)
    out = pd.DataFrame(rows)
    return _beside_paper_t2(out, paper) if len(out) else out


def _beside_paper_t2(out: pd.DataFrame, paper: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Match each row to the paper row with the same role (MAR-only, DM-only, MAR+DM) and planner-size rank."""
    out["paper row"] = ""
    for role, ids in _PAPER_T2.items():
        idx = out[out["_role"] == role].sort_values("_size", kind="stable").index
        if len(idx) == 1:
            out.loc[idx[0], "paper row"] = ids[0]
        elif len(idx) >= 2:
            out.loc[idx[0], "paper row"], out.loc[idx[-1], "paper row"] = ids[0], ids[-1]
    if paper is not None:
        p2 = paper[paper["table"] == "table2"]
        for col in dict.fromkeys(p2["column"]):
            values = dict(zip(p2[p2["column"] == col]["row_id"], p2[p2["column"] == col]["value"]))
            out[f"paper {col}"] = [values.get(r, "") for r in out["paper row"]]
    return out.drop(columns=["_role", "_size"]).fillna("")


def table3(marked: pd.DataFrame) -> pd.DataFrame:
    """Efficiency (Table 3): cost per variant, FVD of each task for context (▽ marks, no bold)."""
    rows = []
    for variant, group in _model_rows(marked).groupby("variant", sort=False):
        row = {"variant": variant, **_cost_cells(group.iloc[0])}
        for _, r in group[group["metric"] == "fvd"].iterrows():
            row[f"{r['task']} FVD"] = marked_cell(r, "fvd", ranked=False)
        rows.append(row)
    return pd.DataFrame(rows)


def table4_label(metric: str, frames: pd.Series) -> str:
    """A Table 4 header: "MidF-LPIPS" when every value scored only the middle frame (the paper's
    protocol for per-frame metrics), else the plain label."""
    frame_protocols = set(frames.dropna().unique()) if len(frames) else set()
    return f"MidF-{label(metric)}" if frame_protocols == {"middle_frame"} else label(metric)


def table4(marked: pd.DataFrame, df: pd.DataFrame, task: str = "interpolation") -> pd.DataFrame:
    """Method x dataset x metric for one task (Table 4): model variants, then baselines."""
    part = marked[marked["task"] == task]
    frames_of = df.get(f"{PROTOCOL_PREFIX}frame_protocol", pd.Series(index=df.index, dtype=object))
    heads = {(d, m): table4_label(m, frames_of[(df["task"] == task) & (df["dataset"] == d) & (df["metric"] == m)])
             for d, m in df.loc[df["task"] == task, ["dataset", "metric"]].drop_duplicates().itertuples(index=False)}
    rows: Dict[str, dict] = {}
    for _, r in part.iterrows():
        name = r["variant"] if r["method"] == "model" else f"baseline: {r['method']}"
        rows.setdefault(name, {"method": name})
        if r["method"] == "model":
            rows[name][f"{r['dataset']} {heads[(r['dataset'], r['metric'])]}"] = marked_cell(r, r["metric"])
    for dataset, sub in df[df["task"] == task].groupby("dataset"):
        for r in _baseline_rows(sub, task, _metrics(df), []):
            rows.setdefault(r["run"], {"method": r["run"]}).update(
                {f"{dataset} {heads.get((dataset, m), label(m))}": r[label(m)] for m in _metrics(df)})
    out = pd.DataFrame(list(rows.values())).fillna("n/a")
    ordered = ["method"] + sorted((c for c in out.columns if c != "method"),
                                  key=lambda c: (c.rsplit(" ", 1)[0], metric_rank(c.rsplit(" ", 1)[-1])))
    return out[ordered]


def metric_rank(metric: str) -> int:
    """Position of a metric (its name or its label) in the tables' column order (registration order);
    unknown ones go last."""
    names = metric_names()
    metric = metric.removeprefix("MidF-")
    for i, name in enumerate(names):
        if metric in (name, label(name)):
            return i
    return len(names)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def build_tables(df: pd.DataFrame, marked: pd.DataFrame, paper: Optional[pd.DataFrame]) -> Dict[str, tuple]:
    """name -> (title, frame): per-task run and summary tables, then the paper-shaped ones."""
    tables: Dict[str, tuple] = {}
    for task in _tasks(df):
        tables[f"runs_{task}"] = (f"Every run: {task}", runs_table(df, task))
    for task in _tasks(df):
        tables[f"summary_{task}"] = (f"Variants over seeds: {task}", summary_table(marked, df, task))
    tables["table2"] = ("Planner x generator, FVD (paper Table 2 shape; paper numbers: VIDIM-Bench 256², "
                        "matched by role and planner-size rank)", table2(marked, paper))
    tables["table3"] = ("Efficiency (paper Table 3 shape)", table3(marked))
    task4 = "interpolation" if "interpolation" in _tasks(df) else (_tasks(df) or [None])[0]
    if task4 is not None:
        tables["table4"] = (f"Method x dataset x metric, {task4} (paper Table 4 shape)", table4(marked, df, task4))
    if paper is not None:
        tables["paper_table3"] = ("Paper Table 3 (1×A100, bf16, DDIM 25, per video)", paper_table(paper, "table3"))
        tables["paper_table4"] = ("Paper Table 4 (VIDIM-Bench; baselines from VIDIM)", paper_table(paper, "table4"))
    return tables


def write_tables(sweep_dir: os.PathLike | str, tables: Dict[str, tuple], protocols: str = "") -> Path:
    """table.md (all tables, legend, protocols), tables.tex and tables/<name>.csv, each written atomically."""
    sweep = Path(sweep_dir)
    parts = [f"# Results: {sweep.name}", "", LEGEND, ""]
    tex = []
    for name, (title, frame) in tables.items():
        parts += [f"## {title}", "", markdown(frame) if len(frame) else "_(no rows)_", ""]
        if len(frame):
            tex.append(latex(frame, title))
            with atomic_file(sweep / "tables" / f"{name}.csv") as tmp:
                frame.to_csv(tmp, index=False)
    if protocols:
        parts += ["## Metric protocols", "", protocols, ""]
    write_text(sweep / "tables.tex", "\n\n".join(tex))
    write_text(sweep / "table.md", "\n".join(parts))
    return sweep / "table.md"


def protocol_table(df: pd.DataFrame) -> str:
    """Markdown table of each metric's protocol (one row per task x metric x distinct protocol)."""
    # protocol.task / protocol.metric repeat the row keys (records carry them so a protocol stands alone)
    cols = [c for c in df.columns if c.startswith("protocol.")
            and c[len("protocol."):] not in PROTOCOL_IGNORE + ("task", "metric")]
    if not cols:
        return ""
    part = df[df["value"].notna()][["task", "metric"] + cols].map(_plain).drop_duplicates()
    part.columns = [c.replace("protocol.", "") for c in part.columns]
    return markdown(part.loc[:, (part != "–").any()].sort_values(["task", "metric"]))


def _plain(value: object) -> str:
    """Protocol values as written: 9 not 9.0, '–' for absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
