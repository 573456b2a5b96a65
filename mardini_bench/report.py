"""`python -m mardini_bench.report results/<sweep>`: collect, test, tabulate, plot, write the report.

Writes into the sweep folder: results.csv/.parquet, significance.csv, table.md, tables.tex,
tables/*.csv, plots/*, report.md (images linked) and report.html (self-contained: images embedded
as base64 data URIs, so the one file can be mailed or attached to an issue).
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd

from mardini_bench import plots, tables
from mardini_bench.results import (CollectError, ProtocolMismatchError, atomic_write, atomic_write_text, collect,
                                   summarise)
from mardini_bench.significance import compare, mark_best

_MIME = {".png": "image/png", ".gif": "image/gif"}


def build_report(sweep_dir: Path | str, allow_mixed_protocols: bool = False, n_boot: int = 500,
                 paper_tables: Optional[str] = None) -> Dict[str, Path]:
    """Run the whole pipeline on one sweep folder; returns the paths of report.md and report.html."""
    sweep = Path(sweep_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = collect(sweep, allow_mixed_protocols=allow_mixed_protocols)
    notes = sorted({str(w.message) for w in caught})
    summary = summarise(df)
    comparisons = compare(df, sweep, n_boot=n_boot)
    atomic_write(sweep / "significance.csv", lambda tmp: comparisons.to_csv(tmp, index=False))
    marked = mark_best(summary, comparisons)
    built = tables.build_tables(df, marked, tables.load_paper(paper_tables))
    protocols = tables.protocol_table(df)
    tables.write_tables(sweep, built, protocols)
    figures = plots.make_all(df, summary, sweep)
    sections = _sections(df, built, comparisons, protocols, notes, allow_mixed_protocols)
    atomic_write_text(sweep / "report.md", _markdown(sweep, sections, figures))
    atomic_write_text(sweep / "report.html", _html(sweep, sections, figures))
    return {"md": sweep / "report.md", "html": sweep / "report.html"}


def _status_lines(df: pd.DataFrame) -> List[str]:
    runs = df.drop_duplicates("run_id")
    counts = runs["status"].value_counts()
    lines = [f"Runs: {len(runs)} (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")."]
    for _, run in runs[runs["status"] != "DONE"].iterrows():
        lines.append(f"- {run['run_id']}: {run['status']}: {run['error']} (its values are NaN, never 0)")
    return lines


def _sections(df: pd.DataFrame, built: Dict[str, tuple], comparisons: pd.DataFrame, protocols: str,
              notes: Sequence[str], mixed: bool) -> List[tuple]:
    """(title, kind, content) with kind 'text' (list of Markdown lines) or 'table' (DataFrame)."""
    head = _status_lines(df) + [""] + ([f"**Mixed protocols allowed**: some columns combine numbers computed "
                                        "under different protocols; see the protocol table."] if mixed else [])
    out: List[tuple] = [("Status", "text", head + [f"- warning: {n}" for n in notes]),
                        ("Legend", "text", [tables.LEGEND])]
    out += [(title, "table", frame) for title, frame in built.values()]
    if len(comparisons):
        shown = comparisons.assign(**{c: comparisons[c].map(lambda v: f"{v:.4g}") for c in
                                      ("mean_a", "mean_b", "delta", "ci_low", "ci_high", "p_value", "p_holm")})
        out.append(("Pairwise comparisons (paired bootstrap, delta = b - a)", "table", shown))
    out.append(("Metric protocols", "text", [protocols or "_(none recorded)_"]))
    return out


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
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mardini_bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="sweep folder holding run folders (results/<sweep>)")
    parser.add_argument("--allow-mixed-protocols", action="store_true",
                        help="tabulate numbers computed under different metric protocols side by side")
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap replicates per comparison")
    parser.add_argument("--paper-tables", default=None, help="paper_tables.csv (default: results/paper/)")
    args = parser.parse_args(argv)
    if args.n_boot < 10:
        print(f"error: --n-boot {args.n_boot} is too small; use at least 10 (default 500)", file=sys.stderr)
        return 2
    try:
        out = build_report(args.sweep_dir, args.allow_mixed_protocols, args.n_boot, args.paper_tables)
    except (CollectError, ProtocolMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out['md']} and {out['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
