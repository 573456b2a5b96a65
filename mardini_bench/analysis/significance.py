"""Paired bootstrap comparisons between sweep variants.

Every run of a sweep scores the same eval clips, so two variants are compared on the *same*
resampled clips (paired over videos); the training seed is the outer level, resampled per variant.
PSNR/SSIM resample `per_video` values; FVD/FID recompute the Frechet distance on the saved
features of the resampled videos (`features` npz: `fake`, and `real` or a cached real set's
`real_mu`/`real_cov`; optional `video_index` mapping each feature row to its clip, e.g. per-frame
FID features).

    table = compare(df, sweep_dir)   # one row per variant pair x task x metric, Holm-corrected
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from mardini_bench.analysis.results import axis_columns, column_keys, variant_label
from mardini_bench.io import load_json
from mardini_bench.metrics.bootstrap import frechet_scorer, paired_bootstrap, per_video_scorer
from mardini_bench.metrics.info import is_distribution, metric_info

def lower_is_better(metric: str) -> bool:
    """The metric's registered direction (`MetricInfo.higher_is_better`); an unknown metric is an error."""
    return not metric_info(metric).higher_is_better


def worse(a: float, b: float, metric: str) -> bool:
    """True when value `a` is strictly worse than `b` on `metric`; False on a tie or when either is NaN."""
    return bool(a > b) if lower_is_better(metric) else bool(a < b)


def _best_of(means: pd.Series, metric: str) -> object:
    """Index label of the best value of `means` (NaN skipped) in the metric's direction."""
    return means.idxmin() if lower_is_better(metric) else means.idxmax()


def load_scorer(sweep_dir: Path, run_id: str, task: str, method: str, metric: str) -> Optional[tuple]:
    """(scorer, num_videos) from the run's result.json record, or None when it saved no evidence."""
    path = Path(sweep_dir) / run_id / "result.json"
    if not path.exists():
        return None
    records = load_json(path).get("records", [])
    rec = next((r for r in records if (r["task"], r["method"], r["metric"]) == (task, method, metric)), None)
    if rec is None:
        return None
    if rec.get("per_video") is not None:
        return per_video_scorer(rec["per_video"]), len(rec["per_video"])
    if is_distribution(metric) and rec.get("features"):
        proto = rec.get("protocol") or {}
        ddof = int(proto.get("ddof", proto.get("covariance_ddof", 1)))
        scorer = frechet_scorer(path.parent / rec["features"], ddof)
        return scorer, scorer.num_videos  # type: ignore[attr-defined]
    return None


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error over one table column)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _variant_scorers(rows: pd.DataFrame, sweep_dir: Path, axes: Sequence[str]) -> Dict[str, tuple]:
    """variant label -> ([scorer per finished seed], {num_videos}) for the model rows of one column."""
    out: Dict[str, tuple] = {}
    for _, row in rows[rows["value"].notna()].iterrows():
        loaded = load_scorer(sweep_dir, row["run_id"], row["task"], "model", row["metric"])
        if loaded is not None:
            scorers, counts = out.setdefault(variant_label(row, axes), ([], set()))
            scorers.append(loaded[0])
            counts.add(loaded[1])
    return out


BASELINE_PREFIX = "baseline: "


def _baseline_scorers(rows: pd.DataFrame, sweep_dir: Path) -> Dict[str, tuple]:
    """"baseline: NAME" -> ([scorer], {num_videos}) for one column's baseline rows. A baseline is
    deterministic and every run scores it on the same clips, so one run's evidence stands for all."""
    out: Dict[str, tuple] = {}
    for _, row in rows[rows["value"].notna()].iterrows():
        label = BASELINE_PREFIX + str(row["method"])
        if label not in out:
            loaded = load_scorer(sweep_dir, row["run_id"], row["task"], row["method"], row["metric"])
            if loaded is not None:
                out[label] = ([loaded[0]], {loaded[1]})
    return out


def compare(df: pd.DataFrame, sweep_dir: Path | str, n_boot: int = 500, alpha: float = 0.05,
            seed: int = 0) -> pd.DataFrame:
    """Every pair of variants within each column (`column_keys`), and every variant against every
    trivial baseline of the column ("baseline: NAME"), paired bootstrap, Holm-corrected per column.

    Pairs whose runs scored different numbers of clips are left out (not paired)."""
    rows, axes, keys = [], axis_columns(df), column_keys(df)
    rng = np.random.default_rng(seed)
    scored = df[df["task"].notna()]
    model = scored[scored["method"] == "model"]
    for key, group in model.groupby(keys, sort=True, dropna=False):
        variants = _variant_scorers(group, Path(sweep_dir), axes)
        baselines = _baseline_scorers(_same_column(scored[scored["method"] != "model"], keys, key), Path(sweep_dir))
        pairs = list(itertools.combinations(sorted(variants), 2))
        pairs += [(a, b) for a in sorted(variants) for b in sorted(baselines)]
        variants = {**variants, **baselines}
        column = []
        for a, b in pairs:
            (sa, na), (sb, nb) = variants[a], variants[b]
            if len(na | nb) != 1:
                continue
            stats = paired_bootstrap(sa, sb, next(iter(na)), n_boot, rng)
            column.append(dict(zip(keys, key), variant_a=a, variant_b=b, seeds_a=len(sa), seeds_b=len(sb), **stats))
        for row, p in zip(column, holm([r["p_value"] for r in column])):
            row.update(p_holm=float(p), significant=bool(p < alpha))
        rows += column
    return pd.DataFrame(rows, columns=keys + ["variant_a", "variant_b", "seeds_a", "seeds_b", "mean_a", "mean_b",
                                              "delta", "ci_low", "ci_high", "p_value", "p_holm", "significant"])


def mark_best(summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Add, per model row of each column (`column_keys`), the marks the tables and the report print.

    - `best`: the best model variant of its column (by mean over seeds, in the metric's direction).
    - `differs_from_best`: Holm p < alpha against that best one; NaN where no paired test exists
      (one variant, or no saved evidence).
    - `baseline`, `baseline_mean`: the column's strongest trivial baseline (method != "model") and
      its mean over the runs that scored it; None/NaN where the column has no baseline value.
    - `beaten_by`: that baseline's name when the variant's mean is strictly worse than it, else None.
      A beaten variant is never shown as best (the tables drop its bold), so a column whose best
      variant loses to a baseline has no bold cell at all.
    Baseline rows keep best=False and NaN/None in the other columns."""
    out = summary.copy()
    out["best"], out["differs_from_best"] = False, np.nan
    out["baseline"], out["baseline_mean"], out["beaten_by"] = None, np.nan, None
    keys = column_keys(summary)
    scored = out[out["mean"].notna()]
    for key, column in scored.groupby(keys, dropna=False):
        model, metric = column[column["method"] == "model"], str(key[2])
        if model.empty:
            continue
        best = _best_of(model["mean"], metric)
        out.loc[best, "best"] = True
        tests = _same_column(comparisons, keys, key)
        baseline, base_mean = _best_baseline(column[column["method"] != "model"], metric)
        for i, row in model.iterrows():
            out.loc[i, "differs_from_best"] = _differs(tests, out.loc[best, "variant"], row["variant"])
            out.loc[i, ["baseline", "baseline_mean"]] = [baseline, base_mean]
            out.loc[i, "beaten_by"] = baseline if worse(row["mean"], base_mean, metric) else None
    return out


def _best_baseline(rows: pd.DataFrame, metric: str) -> tuple:
    """(method, mean) of the strongest baseline among one column's baseline summary rows, or (None, NaN).

    Each run scores the baselines on the same clips, so the summary holds one row per variant x
    baseline; a baseline's value is the mean over all its runs (the rows' means weighted by their n),
    the number the tables print in its `baseline:` row."""
    if rows.empty:
        return None, math.nan
    n = rows["n"].astype(float)
    means = (rows["mean"] * n).groupby(rows["method"]).sum() / n.groupby(rows["method"]).sum()
    name = _best_of(means, metric)
    return str(name), float(means[name])


def _same_column(comparisons: pd.DataFrame, keys: Sequence[str], key: tuple) -> pd.DataFrame:
    if comparisons.empty:
        return comparisons
    mask = np.ones(len(comparisons), dtype=bool)
    for k, v in zip(keys, key):
        mask &= (comparisons[k].isna() if _isna(v) else comparisons[k] == v).to_numpy()
    return comparisons[mask]


def _isna(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _differs(tests: pd.DataFrame, a: str, b: str) -> float:
    if a == b or tests.empty:
        return math.nan
    hit = tests[((tests["variant_a"] == a) & (tests["variant_b"] == b)) | ((tests["variant_a"] == b) & (tests["variant_b"] == a))]
    return float(hit["significant"].iloc[0]) if len(hit) else math.nan
