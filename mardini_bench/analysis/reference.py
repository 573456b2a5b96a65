"""Reference results: a sweep's collected numbers frozen in the repo, and a user's sweep beside them.

`python -m mardini_bench.report results/<sweep> --save-reference results/reference/<grid>` writes

    results.csv      the tidy collected frame (one row per run x task x method x metric)
    per_video.csv    run_id, task, method, metric, video_index, value: each per-clip score (PSNR,
                     SSIM, LPIPS), the evidence of a paired test
    significance.csv the sweep's own comparisons
    table.md         its tables
    machine.json     the commit the runs were trained at, cores, threads, the regenerating command

and `python -m mardini_bench.report results/<sweep> --reference results/reference/<grid>` adds a
section that puts each variant's mean beside the reference's. Two numbers are tested against each
other with the strongest test the evidence allows: where both sides scored the same clips (every
protocol field equal: dataset, eval seed, clip count, frames) and kept per-clip values, the paired
bootstrap of the sweep's own comparisons (seeds outer, clips paired); otherwise Welch's t-test over
the seeds' values, said so in the row. FVD/FID features are not committed (megabytes per grid), so
distribution metrics always get the seed-level test.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mardini_bench.analysis.results import axis_columns, t_interval, variant_label
from mardini_bench.analysis.significance import lower_is_better
from mardini_bench.metrics.bootstrap import paired_bootstrap, per_video_scorer
from mardini_bench.analysis.tables import cell
from mardini_bench.io import atomic_file, load_json, write_json, write_text
from mardini_bench.metrics.info import metric_info

PER_VIDEO = "per_video.csv"
MACHINE = "machine.json"
# Protocol fields that say which clips were scored; equal fields = the same clips, so a paired test holds.
CLIP_FIELDS = ("dataset", "eval_seed", "eval_split", "num_videos", "frames_per_clip", "frames", "resolution",
               "scored_frames", "frame_protocol")


class ReferenceError(ValueError):
    """A reference folder that cannot be read or compared."""


# ----------------------------------------------------------------------------------------------
# Writing a reference
# ----------------------------------------------------------------------------------------------
def per_video_frame(sweep_dir: Path, run_ids: Sequence[str]) -> pd.DataFrame:
    """Every per-clip score the runs' result.json files hold, one row per clip."""
    rows: List[Dict[str, Any]] = []
    for run_id in run_ids:
        path = sweep_dir / run_id / "result.json"
        if not path.exists():
            continue
        for rec in load_json(path).get("records", []):
            for i, value in enumerate(rec.get("per_video") or []):
                rows.append({"run_id": run_id, "task": rec["task"], "method": rec["method"],
                             "metric": rec["metric"], "video_index": i, "value": value})
    return pd.DataFrame(rows, columns=["run_id", "task", "method", "metric", "video_index", "value"])


def _git_of(sweep_dir: Path, run_ids: Sequence[str]) -> List[str]:
    commits = set()
    for run_id in run_ids:
        path = sweep_dir / run_id / "git.json"
        if path.exists():
            info = load_json(path)
            commits.add(str(info.get("commit", info.get("sha", "?")))[:12] + (" (dirty)" if info.get("dirty") else ""))
    return sorted(commits)


def save_reference(sweep_dir: Path | str, dest: Path | str, df: pd.DataFrame, command: str = "") -> Path:
    """Freeze a collected sweep (its report already written) into `dest`; returns `dest`."""
    sweep, dest = Path(sweep_dir), Path(dest)  # the writers below make `dest`
    run_ids = sorted(df["run_id"].dropna().unique())
    with atomic_file(dest / "results.csv") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_file(dest / PER_VIDEO) as tmp:
        per_video_frame(sweep, run_ids).to_csv(tmp, index=False)
    for name in ("significance.csv", "table.md"):
        if (sweep / name).exists():
            write_text(dest / name, (sweep / name).read_text())
    threads = sorted({int(t) for t in pd.to_numeric(df.get("threads"), errors="coerce").dropna()})
    sweep_json = load_json(sweep / "sweep.json") if (sweep / "sweep.json").exists() else {}
    write_json(dest / MACHINE, {
        "sweep": sweep.name, "grid": sweep_json.get("grid"),
        "command": command or (f"python -m mardini_bench.sweep {sweep_json['grid']}" if sweep_json.get("grid") else None),
        "code": _git_of(sweep, run_ids), "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "threads_per_run": threads, "runs": len(run_ids),
        "train_wall_s": {r: float(v) for r, v in df.drop_duplicates("run_id").set_index("run_id")["train_wall_s"]
                         .dropna().items()},
    })
    return dest


# ----------------------------------------------------------------------------------------------
# Comparing with a reference
# ----------------------------------------------------------------------------------------------
def load_reference(folder: Path | str) -> Dict[str, Any]:
    folder = Path(folder)
    if not (folder / "results.csv").is_file():
        raise ReferenceError(f"--reference {folder}: no results.csv there; a reference folder is written by "
                             f"`python -m mardini_bench.report SWEEP --save-reference {folder}`")
    df = pd.read_csv(folder / "results.csv")
    per_video = pd.read_csv(folder / PER_VIDEO) if (folder / PER_VIDEO).is_file() else None
    machine = load_json(folder / MACHINE) if (folder / MACHINE).is_file() else {}
    return {"name": folder.name, "df": df, "per_video": per_video, "machine": machine}


def _clips(rows: pd.DataFrame) -> Optional[str]:
    """The clip-defining protocol fields of a column's rows, or None when its rows disagree."""
    cols = [f"protocol.{f}" for f in CLIP_FIELDS if f"protocol.{f}" in rows.columns]
    seen = {json.dumps([_plain(v) for v in row], default=str) for row in rows[cols].itertuples(index=False)}
    return seen.pop() if len(seen) == 1 else None


def _plain(value: Any) -> Any:
    """CSV round trips turn 9 into 9.0 and lists into strings; compare them as text of numbers."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


def _scorers(per_video: Optional[pd.DataFrame], rows: pd.DataFrame) -> Optional[List[Any]]:
    if per_video is None:
        return None
    out = []
    for run_id in rows["run_id"]:
        part = per_video[(per_video["run_id"] == run_id) & (per_video["task"] == rows["task"].iloc[0])
                         & (per_video["method"] == "model") & (per_video["metric"] == rows["metric"].iloc[0])]
        if part.empty:
            return None
        out.append(per_video_scorer(part.sort_values("video_index")["value"].to_numpy(float)))
    return out


def _cell(values: pd.Series, metric: str) -> str:
    ci = t_interval(values)
    return f"{cell(ci['mean'], ci['ci95'], metric)} (n={ci['n']})"


def _variants(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    model = df[(df["method"] == "model") & df["value"].notna()].copy()
    model["variant"] = [variant_label(r, axes) for _, r in model.iterrows()] if len(model) else []
    return model


def compare_reference(df: pd.DataFrame, per_video: Optional[pd.DataFrame], ref: Dict[str, Any],
                      n_boot: int = 500) -> pd.DataFrame:
    """One row per variant x task x metric found in both: ours, the reference's, the difference and
    its test (paired bootstrap on the same clips, else Welch over seeds)."""
    ref_df = ref["df"]
    axes = [a for a in axis_columns(df) if a in ref_df.columns]
    ours, theirs = _variants(df, axes), _variants(ref_df, axes)
    rows = []
    for (variant, task, metric), mine in ours.groupby(["variant", "task", "metric"], sort=False):
        other = theirs[(theirs["variant"] == variant) & (theirs["task"] == task) & (theirs["metric"] == metric)]
        if other.empty:
            continue
        a, b = mine["value"].astype(float), other["value"].astype(float)
        clips = _clips(mine)
        same_clips = clips is not None and clips == _clips(other)
        sa, sb = _scorers(per_video, mine), _scorers(ref["per_video"], other)
        if same_clips and sa and sb:
            n_videos = int(mine["protocol.num_videos"].iloc[0])
            test = paired_bootstrap(sb, sa, n_videos, n_boot)
            p, how = test["p_value"], "paired bootstrap (same clips)"
        elif len(a) > 1 and len(b) > 1:
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
            how = "Welch over seeds" + ("" if same_clips else " (different clips)")
        else:
            p, how = math.nan, "no test (one seed)"
        better = (a.mean() < b.mean()) == lower_is_better(metric)
        rows.append({"variant": variant, "task": task, "metric": metric_info(metric).label,
                     "this sweep": _cell(a, metric), f"reference {ref['name']}": _cell(b, metric),
                     "delta": f"{a.mean() - b.mean():+.{metric_info(metric).decimals}g}",
                     "p": "n/a" if math.isnan(p) else f"{p:.3g}", "test": how,
                     "verdict": "n/a" if math.isnan(p) else
                     ("differs, " + ("this sweep better" if better else "reference better") if p < 0.05 else "agrees")})
    return pd.DataFrame(rows)


def reference_lines(ref: Dict[str, Any]) -> List[str]:
    m = ref["machine"]
    code = ", ".join(m.get("code", [])) or "unknown commit"
    return [f"Reference `{ref['name']}`: trained at {code} on {m.get('machine', 'an unrecorded machine')}, "
            f"{m.get('threads_per_run', '?')} thread(s) per run; regenerate with `{m.get('command', '?')}`. "
            f"'agrees' = no significant difference (p >= 0.05)."]


__all__ = ["save_reference", "load_reference", "compare_reference", "reference_lines", "per_video_frame",
           "ReferenceError"]
