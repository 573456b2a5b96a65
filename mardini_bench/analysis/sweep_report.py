"""`python -m mardini_bench.report results/<sweep>`: collect, test, tabulate, plot, write the report.

Writes into the sweep folder: results.csv/.parquet, significance.csv, table.md, tables.tex,
tables/*.csv, plots/*, report.md (images linked) and report.html (self-contained: images embedded
as base64 data URIs, so the one file can be mailed or attached to an issue). Both reports carry
one line per task saying where the model variants stand against the trivial baselines, and the
long-video FVD table and GIF of every run that has them (`run/long_video.py`).
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from mardini_bench.analysis import plots, tables
from mardini_bench.analysis.claims import CLAIMS_FILE, COST_NAMES, claim_rows
from mardini_bench.analysis.reference import (ReferenceError, compare_reference, load_reference, per_video_frame,
                                              reference_lines, save_reference)
from mardini_bench.analysis.results import (CollectError, ProtocolMismatchError, collect,
                                            column_keys, summarise, variant_costs)
from mardini_bench.analysis.significance import BASELINE_PREFIX, compare, lower_is_better, mark_best
from mardini_bench.args import Command, command_main
from mardini_bench.io import DamagedFileError, NoSpaceError, all_or_nothing, atomic_file, load_json, write_text
from mardini_bench.run import long_video

_MIME = {".png": "image/png", ".gif": "image/gif"}
# Bootstrap replicates per comparison. Fewer than 10 give no interval at all. 10000 resolve p-values down
# to 1e-4, below the Holm threshold of hundreds of comparisons (0.05 / 500); each replicate re-scores every
# run of the comparison (FVD: a Frechet distance), so more only costs hours and memory.
MIN_N_BOOT, MAX_N_BOOT = 10, 10_000


def build_report(sweep_dir: Path | str, allow_mixed_protocols: bool = False, n_boot: int = 500,
                 paper_tables: Optional[str] = None, reference: Optional[str] = None,
                 save_as_reference: Optional[str] = None) -> Dict[str, Path]:
    """Run the whole pipeline on one sweep folder; returns the paths of report.md and report.html.

    `reference`: a folder of frozen results (results/reference/<grid>) to set beside this sweep's;
    `save_as_reference`: freeze this sweep's results into that folder. Every file is written in one
    `all_or_nothing` block: a failure half-way leaves the folder's earlier report as it was."""
    ref = load_reference(reference) if reference else None  # a bad folder fails before any work
    sweep = Path(sweep_dir)
    paper = tables.load_paper(paper_tables)  # a wrong --paper-tables fails before anything is written
    with all_or_nothing():
        return _build(sweep, allow_mixed_protocols, n_boot, paper, ref, save_as_reference)


def _build(sweep: Path, allow_mixed_protocols: bool, n_boot: int, paper: object, ref: Optional[dict],
           save_as_reference: Optional[str]) -> Dict[str, Path]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = collect(sweep, allow_mixed_protocols=allow_mixed_protocols)
    notes = sorted({str(w.message) for w in caught})
    summary = summarise(df)
    comparisons = compare(df, sweep, n_boot=n_boot)
    with atomic_file(sweep / "significance.csv") as tmp:
        comparisons.to_csv(tmp, index=False)
    marked = mark_best(summary, comparisons)
    built = tables.build_tables(df, marked, paper)
    protocols = tables.protocol_table(df)
    tables.write_tables(sweep, built, protocols)
    figures = plots.make_all(df, summary, sweep)
    sections = _sections(df, built, comparisons, protocols, notes, allow_mixed_protocols, baseline_lines(marked))
    long_sections, long_figures = long_video_sections(sweep, sorted(df["run_id"].dropna().unique()))
    sections, figures = sections + long_sections, figures + long_figures
    steps = plots.fig6c_table(df, sweep)
    if steps is not None:
        sections.append(("Steps to a fixed training loss, Identity Attention on/off (cf. paper Fig. 6c)", "table",
                         steps))
    costs = {column: variant_costs(df, column) for column in COST_NAMES if column in df.columns}
    verdicts = claim_rows(sweep.name, comparisons, plots.seed_steps_to_loss(plots.identity_curves(df, sweep)), costs)
    if len(verdicts):
        sections.insert(3, ("Paper claims tested by this grid", "table", verdicts))
    if ref is not None:
        beside = compare_reference(df, per_video_frame(sweep, sorted(df["run_id"].dropna().unique())), ref, n_boot)
        sections[2:2] = [(f"Beside the reference {ref['name']}", "text", reference_lines(ref)),
                         (f"This sweep vs reference {ref['name']}", "table", beside)]
    write_text(sweep / "report.md", _markdown(sweep, sections, figures))
    write_text(sweep / "report.html", _html(sweep, sections, figures))
    if save_as_reference:
        save_reference(sweep, save_as_reference, df)
        if len(verdicts):
            with atomic_file(Path(save_as_reference) / CLAIMS_FILE) as tmp:
                verdicts.to_csv(tmp, index=False)
    return {"md": sweep / "report.md", "html": sweep / "report.html"}


def _status_lines(df: pd.DataFrame) -> List[str]:
    runs = df.drop_duplicates("run_id")
    counts = runs["status"].value_counts()
    lines = [f"Runs: {len(runs)} (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")."]
    for _, run in runs[runs["status"] != "DONE"].iterrows():
        lines.append(f"- {run['run_id']}: {run['status']}: {run['error']} (its values are NaN, never 0)")
    return lines


def baseline_lines(marked: pd.DataFrame) -> List[str]:
    """One plain-English line per task on where its model variants stand against the trivial baselines.

    Reads `mark_best`'s marks (each column's strongest baseline and `beaten_by`), so a line agrees
    with the ▽ flags of the tables; e.g. 'interpolation: no model variant beats copy_nearest on PSNR
    (best 20.10 vs 22.30); all variants beat both baselines on FVD, FID, SSIM.' A task with no
    baseline value gets no line."""
    model = marked[(marked["method"] == "model") & marked["mean"].notna() & marked["baseline_mean"].notna()]
    keys, lines = column_keys(marked), []
    for task, part in model.groupby("task", sort=True):
        baselines = marked[(marked["task"] == task) & (marked["method"] != "model") & marked["mean"].notna()]
        lines.append(f"{task}: " + "; ".join(_standing_clauses(part, baselines["method"].nunique(), keys)) + ".")
    return lines


def _standing_clauses(model: pd.DataFrame, n_baselines: int, keys: Sequence[str]) -> List[str]:
    """Clauses for one task's model rows: columns (in table order) that share a verdict share a clause,
    e.g. 'no model variant beats copy_nearest on FVD (best 168.2 vs 21.8), PSNR (best 23.82 vs 27.60)';
    verdicts where variants lose come first, 'all variants beat both baselines on ...' last."""
    varying = [k for k in keys if k not in ("task", "metric") and model[k].nunique(dropna=False) > 1]
    columns = sorted(model.groupby(keys, dropna=False, sort=False),
                     key=lambda kv: (tables.metric_rank(str(kv[0][keys.index("metric")])), str(kv[0])))
    every = {1: "the baseline", 2: "both baselines"}.get(n_baselines, f"all {n_baselines} baselines")
    losing: Dict[str, List[str]] = {}
    winning: List[str] = []
    for key, column in columns:
        label = _column_label(dict(zip(keys, key)), varying)
        verdict = _losing_verdict(column)
        if verdict is None:
            winning.append(label)
        else:
            losing.setdefault(verdict[0], []).append(f"{label} ({verdict[1]})")
    heads = list(losing.items()) + ([(f"all variants beat {every}", winning)] if winning else [])
    return [f"{head} on {', '.join(labels)}" for head, labels in heads]


def _losing_verdict(column: pd.DataFrame) -> Optional[tuple]:
    """(verdict, numbers) for one column whose variants lose to its strongest baseline, e.g.
    ('no model variant beats copy_nearest', 'best 20.10 vs 22.30') or ('only 1 of 2 variants beats
    copy_nearest', 'worst 21.05 vs 22.30'); None when no variant of the column is beaten."""
    metric = str(column["metric"].iloc[0])
    beaten = column["beaten_by"].map(lambda b: isinstance(b, str))
    baseline, base = column["baseline"].iloc[0], tables.number(column["baseline_mean"].iloc[0], metric)
    if beaten.all():
        best = tables.number(column.loc[column["best"], "mean"].iloc[0], metric)
        return f"no model variant beats {baseline}", f"best {best} vs {base}"
    if beaten.any():
        winners = int((~beaten).sum())
        worst = tables.number(column["mean"].max() if lower_is_better(metric) else column["mean"].min(), metric)
        return (f"only {winners} of {len(column)} variants {'beats' if winners == 1 else 'beat'} {baseline}",
                f"worst {worst} vs {base}")
    return None


def _column_label(key: Dict[str, object], varying: Sequence[str]) -> str:
    """'PSNR', or 'PSNR (synthetic, frames=13)' when the task spans several datasets or eval settings."""
    extra = [str(key[k]) if k == "dataset" else f"{k.split('.')[-1]}={key[k]}" for k in varying]
    return str(key["metric"]).upper() + (f" ({', '.join(extra)})" if extra else "")


def long_video_sections(sweep: Path, run_ids: Sequence[str]) -> Tuple[List[tuple], List[Path]]:
    """For each run with a whole long-video demo (`python -m mardini_bench.run.long_video`): its FVD
    table, model beside repeating the last given frame, labelled with the protocol; and its GIF."""
    sections: List[tuple] = []
    figures: List[Path] = []
    for run_id in run_ids:
        folder = sweep / str(run_id) / long_video.FOLDER
        if not (folder / long_video.RESULT).is_file():
            continue
        result = load_json(folder / long_video.RESULT)
        p, test = result["protocol"], result["comparison"]
        rows = pd.DataFrame([{"method": r["method"], "FVD": tables.number(r["value"], "fvd"),
                              "95% CI": " to ".join(tables.number(v, "fvd") for v in r["ci"]) if r["ci"] else "n/a"}
                             for r in result["records"]])
        label = (f"Protocol: {p['clips']} held-out clips of {p['frames']} frames ({p['split']} split, seed "
                 f"{p['seed']}); the model ({p['weights']} weights, step {p['checkpoint_step']}) is given "
                 f"{p['keyframes']} real key frame(s) at {p['keyframe_positions']} and fills the rest with "
                 f"{p['sampler_calls']} calls of its {p['window']}-frame window; FVD against the real clips.")
        sections += [(f"Long video, run {run_id}", "text", [label, "", long_video.verdict(test)]),
                     (f"Long video FVD, run {run_id} ({p['frames']} frames, {p['clips']} clips)", "table", rows)]
        figures += [folder / name for name in result["media"] if name.endswith(".gif")]
    return sections, figures


def _sections(df: pd.DataFrame, built: Dict[str, tuple], comparisons: pd.DataFrame, protocols: str,
              notes: Sequence[str], mixed: bool, standing: Sequence[str] = ()) -> List[tuple]:
    """(title, kind, content) with kind 'text' (list of Markdown lines) or 'table' (DataFrame);
    `standing` (the `baseline_lines`) follows the legend."""
    head = _status_lines(df) + [""] + ([f"**Mixed protocols allowed**: some columns combine numbers computed "
                                        "under different protocols; see the protocol table."] if mixed else [])
    out: List[tuple] = [("Status", "text", head + [f"- warning: {n}" for n in notes]),
                        ("Legend", "text", [tables.LEGEND])]
    if standing:
        out.append(("Model variants vs trivial baselines", "text", list(standing)))
    out += [(title, "table", frame) for title, frame in built.values()]
    against = comparisons["variant_b"].astype(str).str.startswith(BASELINE_PREFIX) if len(comparisons) else []
    if len(comparisons) and against.any():
        out.append(("Model variants vs trivial baselines (paired bootstrap, delta = baseline - model)", "table",
                    _against_baselines(comparisons[against])))
    if len(comparisons) and not against.all():
        pairs = comparisons[~against]
        shown = pairs.assign(**{c: pairs[c].map(lambda v: f"{v:.4g}") for c in
                                ("mean_a", "mean_b", "delta", "ci_low", "ci_high", "p_value", "p_holm")})
        out.append(("Pairwise comparisons (paired bootstrap, delta = b - a)", "table", shown))
    out.append(("Metric protocols", "text", [protocols or "_(none recorded)_"]))
    return out


def _against_baselines(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per variant x baseline x column: both means, the 95% interval of the difference, the
    Holm p-value, and the verdict in the metric's direction ("model better", significant or not)."""
    out = rows.drop(columns=["seeds_b", "p_value"]).rename(columns={"variant_a": "variant", "variant_b": "baseline",
                                                                   "seeds_a": "seeds", "mean_a": "model",
                                                                   "mean_b": "baseline mean"})
    out["baseline"] = out["baseline"].str.removeprefix(BASELINE_PREFIX)
    better = [(m < b) if lower_is_better(metric) else (m > b)
              for m, b, metric in zip(rows["mean_a"], rows["mean_b"], rows["metric"])]
    out["verdict"] = [("model better" if up else "baseline better") + (", significant" if sig else ", not significant")
                      for up, sig in zip(better, rows["significant"])]
    for c in ("model", "baseline mean", "delta", "ci_low", "ci_high", "p_holm"):
        out[c] = out[c].map(lambda v: f"{v:.4g}")
    return out.drop(columns=["significant"])


def _markdown(sweep: Path, sections: List[tuple], figures: Sequence[Path]) -> str:
    parts = [f"# Sweep report: {sweep.name}", ""]
    for title, kind, content in sections:
        parts += [f"## {title}", ""]
        parts += list(content) if kind == "text" else [tables.markdown(content) if len(content) else "_(no rows)_"]
        parts.append("")
    parts += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(sweep).as_posix()})" for p in figures]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------
_CSS = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}"
        "td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}")


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the tables use: **bold** and `code`."""
    text = html.escape(str(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_text(lines: Sequence[str]) -> str:
    out = []
    for block in lines:
        rows = [r for r in str(block).splitlines() if r.strip()]
        if rows and rows[0].startswith("|"):  # a Markdown table (the protocol table)
            cells = [[c.strip() for c in r.strip("|").split(" | ")] for r in rows if not r.startswith("|---")]
            out.append(_html_table(pd.DataFrame(cells[1:], columns=cells[0])))
        else:
            out += [f"<p>{_inline(r)}</p>" for r in rows]
    return "\n".join(out)


def data_uri(path: Path) -> str:
    """The file as a base64 data URI (PNG or GIF), so report.html needs no side files."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{_MIME.get(path.suffix.lower(), 'application/octet-stream')};base64,{encoded}"


def _html(sweep: Path, sections: List[tuple], figures: Sequence[Path]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(sweep.name)}</title>"
             f"<style>{_CSS}</style></head><body><h1>Sweep report: {html.escape(sweep.name)}</h1>"]
    for title, kind, content in sections:
        body = _html_text(content) if kind == "text" else (_html_table(content) if len(content) else "<p>(no rows)</p>")
        parts.append(f"<h2>{_inline(title)}</h2>{body}")
    parts.append("<h2>Figures</h2>")
    parts += [f"<figure><img alt='{p.stem}' src='{data_uri(p)}'><figcaption>{p.name}</figcaption></figure>"
              for p in figures]
    return "\n".join(parts) + "</body></html>\n"


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", help="sweep folder holding run folders (results/<sweep>)")
    parser.add_argument("--allow-mixed-protocols", action="store_true",
                        help="tabulate numbers computed under different metric protocols side by side")
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap replicates per comparison")
    parser.add_argument("--paper-tables", default=None, help="paper_tables.csv (default: results/paper/)")
    parser.add_argument("--reference", default=None, metavar="DIR",
                        help="frozen results to compare with, e.g. results/reference/table2")
    parser.add_argument("--save-reference", default=None, metavar="DIR",
                        help="also freeze this sweep's results into DIR (results.csv, per-clip scores, machine)")


def execute(args: argparse.Namespace) -> int:
    if not MIN_N_BOOT <= args.n_boot <= MAX_N_BOOT:
        print(f"error: --n-boot {args.n_boot} is too {'small' if args.n_boot < MIN_N_BOOT else 'large'}; valid: "
              f"{MIN_N_BOOT} to {MAX_N_BOOT} (default 500)", file=sys.stderr)
        return 2
    try:
        out = build_report(args.sweep_dir, args.allow_mixed_protocols, args.n_boot, args.paper_tables,
                           args.reference, args.save_reference)
    except (CollectError, ProtocolMismatchError, DamagedFileError, NoSpaceError, ReferenceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out['md']} and {out['html']}")
    return 0


COMMAND = Command(add_arguments, execute, "Collect a sweep's runs, test, tabulate and plot them, and write report.md "
                                          "and report.html into the sweep folder.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m mardini_bench.report`: the `report` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.report")
