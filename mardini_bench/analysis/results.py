"""Collect a sweep's run folders into one tidy table, and summarise it over seeds.

One row per run x task x method x metric. A run that failed or never finished keeps its rows,
with NaN values and its status, so an aggregate can never silently average a missing number as 0
(VBench's `cal_final_score.py` does). Values whose metric protocols differ (other extractor
weights, resize mode, number of videos...) are refused within one column unless the caller
explicitly allows mixing.

    df = collect("results/quickstart")   # also writes results.csv and results.parquet
    summary = summarise(df)              # mean +- 95% t-interval over seeds, per variant
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np
import pandas as pd
from scipy import stats

from mardini_bench.io import DamagedFileError, all_or_nothing, atomic_file, load_json
from mardini_bench.run.result_file import COST_KEYS, RESULT, load_result
from mardini_bench.run.state import CONFIG, FAILED, OVERRIDES, read_manifest, run_state

COST_COLUMNS = COST_KEYS  # the cost fields a run's result.json carries, one column each
# Columns every collected frame has; anything else that is not `protocol.*` is an ablation axis.
BASE_COLUMNS = ("run_id", "status", "error", "seed", "planner", "generator", "dataset", "task", "method",
                "metric", "value", "features", "train_steps", "final_loss", "train_wall_s", "threads") + COST_COLUMNS
SUMMARY_COLUMNS = ("variant", "runs", "n", "n_missing", "mean", "std", "ci95", "ci_low", "ci_high")
PROTOCOL_PREFIX = "protocol."
# Fields of a record's protocol that do not change what a number means. `real_stats` says whether
# the real set's statistics came from the on-disk cache or were computed in the run: the cache is
# keyed by the feature protocol, so both give the same statistics. Counts (num_videos, num_real,
# num_fake) are NOT ignored: FVD/FID are biased in N, so different counts are different protocols.
# `trace_sqrt` is the numerical route to tr sqrt(S1 S2): every route is exact and they agree to ~1e-6
# relative (golden case), so values from different routes share a column.
PROTOCOL_IGNORE = ("note", "real_stats", "trace_sqrt", "trace_sqrt_detail")


class ProtocolMismatchError(ValueError):
    """Values in one metric column were computed under different protocols."""


class CollectError(ValueError):
    """The sweep folder is missing or holds no run folders."""


# ----------------------------------------------------------------------------------------------
# Reading run folders
# ----------------------------------------------------------------------------------------------
def _optional_json(path: Path, expect: type = dict) -> Any:
    """The JSON in `path`, None when absent; `DamagedFileError` naming the file when damaged."""
    try:
        return load_json(path, expect)
    except FileNotFoundError:
        return None


def run_dirs(sweep_dir: Path) -> List[Path]:
    """Sub-folders that look like runs (hold a config, a result or a failure), sorted by name. In a sweep
    folder, only the runs of its latest launch (sweep.json): a folder left by an earlier launch with other
    settings is another experiment, left out with a warning that names how many."""
    markers = (CONFIG, RESULT, FAILED, OVERRIDES)
    dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and any((p / m).exists() for m in markers))
    launched = launched_runs(sweep_dir)
    if launched is None:
        return dirs
    earlier = [p.name for p in dirs if p.name not in launched]
    if earlier:
        warnings.warn(f"{len(earlier)} run folder(s) not in the latest launch of this sweep (sweep.json) left out, "
                      f"e.g. {earlier[0]}: an earlier launch with other settings")
    return [p for p in dirs if p.name in launched]


def launched_runs(sweep_dir: Path) -> Optional[Set[str]]:
    """The run ids of the sweep's latest launch (its sweep.json), None in a folder of runs without one."""
    try:
        return {point["run_id"] for point in read_manifest(sweep_dir)["points"]}
    except FileNotFoundError:
        return None
    except DamagedFileError as err:
        raise CollectError(f"{err}; launch the sweep again to rewrite it") from None


def parse_overrides(data: Any) -> Dict[str, Any]:
    """overrides.json as a list of 'a.b=c' strings or a mapping -> {key: value}; values stay typed."""
    if isinstance(data, dict):
        return dict(data)
    out: Dict[str, Any] = {}
    for item in data or []:
        key, _, value = str(item).partition("=")
        out[key.strip()] = _auto_type(value.strip())
    return out


def _auto_type(text: str) -> Any:
    """'4' -> 4, '0.5' -> 0.5, 'true' -> True; anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _get(config: Dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _expected(config: Dict[str, Any]) -> List[tuple]:
    """(task, method, metric) triples the run's eval config asks for: the rows a failed run keeps."""
    ev = config.get("eval", {}) if config else {}
    methods = ["model"] + list(ev.get("baselines", []))
    return [(t, m, k) for t in ev.get("tasks", []) for m in methods for k in ev.get("metrics", [])]


def _run_info(run_dir: Path) -> Dict[str, Any]:
    """Columns shared by every row of one run; a run whose files are damaged is DAMAGED, with the fault."""
    try:
        return _read_run_info(run_dir)
    except DamagedFileError as err:
        info = {"run_id": run_dir.name, "status": "DAMAGED", "error": str(err)}
        return {"info": info, "config": {}, "result": None}


def _read_run_info(run_dir: Path) -> Dict[str, Any]:
    """Columns shared by every row of one run: id, status, seed, axes, cost, training summary."""
    result = load_result(run_dir)
    config = (result or {}).get("config") or _optional_json(run_dir / CONFIG) or {}
    overrides = _optional_json(run_dir / OVERRIDES, (list, dict)) or []
    info: Dict[str, Any] = {"run_id": (result or {}).get("run_id", run_dir.name), "error": None,
                            "seed": config.get("seed"), "planner": _get(config, "model.planner.name"),
                            "generator": _get(config, "model.generator.name"),
                            "dataset": _get(config, "data.dataset")}
    info.update({k: v for k, v in parse_overrides(overrides).items() if k != "seed"})
    state, detail = run_state(run_dir)  # what the sweep's status says, from the same files
    info.update(status=state, error=detail or (None if state == "DONE" else "no result.json yet"))
    cost = (result or {}).get("cost") or {}
    info.update({c: cost.get(c, math.nan) for c in COST_COLUMNS})
    train = (result or {}).get("train") or {}
    info.update(train_steps=train.get("steps", math.nan), final_loss=train.get("final_loss", math.nan),
                train_wall_s=train.get("wall_s", math.nan), threads=train.get("threads", math.nan))
    return {"info": info, "config": config, "result": result}


def _record_row(info: Dict[str, Any], record: Dict[str, Any], run_dir: Path, sweep_dir: Path) -> Dict[str, Any]:
    row = dict(info, task=record["task"], method=record["method"], metric=record["metric"])
    value = record.get("value")
    row["value"] = math.nan if value is None else float(value)
    feats = record.get("features")
    row["features"] = os.path.relpath(run_dir / feats, sweep_dir) if feats else None
    for key, val in (record.get("protocol") or {}).items():
        row[PROTOCOL_PREFIX + key] = json.dumps(val) if isinstance(val, (list, dict)) else val
    return row


def _run_rows(run_dir: Path, sweep_dir: Path) -> List[Dict[str, Any]]:
    """Tidy rows of one run; expected but absent values become NaN rows and a warning."""
    parsed = _run_info(run_dir)
    info, result = parsed["info"], parsed["result"]
    records = (result or {}).get("records", []) if info["status"] == "DONE" else []
    rows = [_record_row(info, r, run_dir, sweep_dir) for r in records]
    have = {(r["task"], r["method"], r["metric"]) for r in rows}
    missing = [e for e in _expected(parsed["config"]) if e not in have]
    if info["status"] != "DONE":
        warnings.warn(f"run {info['run_id']} is {info['status']} ({info['error']}); its values are NaN")
    elif missing:
        warnings.warn(f"run {info['run_id']} lacks {len(missing)} expected values (e.g. {missing[0]}); NaN")
    rows += [dict(info, task=t, method=m, metric=k, value=math.nan, features=None) for t, m, k in missing]
    if not rows:  # a failed run whose config names no eval still shows up in the table
        rows = [dict(info, task=None, method="model", metric=None, value=math.nan, features=None)]
    return rows


# ----------------------------------------------------------------------------------------------
# Protocol check
# ----------------------------------------------------------------------------------------------
def protocol_columns(df: pd.DataFrame) -> List[str]:
    return [c for c in df.columns if c.startswith(PROTOCOL_PREFIX)]


def _protocol_of(row: pd.Series, columns: Sequence[str]) -> str:
    items = {c[len(PROTOCOL_PREFIX):]: row[c] for c in columns if not _isna(row[c])}
    return json.dumps({k: v for k, v in sorted(items.items()) if k not in PROTOCOL_IGNORE}, default=str)


def _isna(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def column_keys(df: pd.DataFrame) -> List[str]:
    """What makes one comparable column: dataset, task, metric and every eval-defining axis.

    An axis under `data.` or `eval.` (clip length, resolution, number of eval clips) changes the
    eval set itself, so its settings are separate columns: never pooled, tested or ranked together."""
    return ["dataset", "task", "metric"] + [a for a in axis_columns(df) if a.startswith(("data.", "eval."))]


def check_protocols(df: pd.DataFrame) -> None:
    """Raise ProtocolMismatchError naming both protocols if one column (`column_keys`) mixes them.

    Baselines and the model share a column in every table, so they must share a protocol too.
    """
    columns = protocol_columns(df)
    scored = df[df["value"].notna()]
    for key, group in scored.groupby(column_keys(df), sort=True, dropna=False):
        task, metric = key[1], key[2]
        seen: Dict[str, List[str]] = {}
        for _, row in group.iterrows():
            seen.setdefault(_protocol_of(row, columns), []).append(f"{row['run_id']}/{row['method']}")
        if len(seen) > 1:
            (p1, r1), (p2, r2) = list(seen.items())[:2]
            raise ProtocolMismatchError(
                f"metric '{metric}' (task {task}) mixes protocols: {p1} (e.g. {r1[0]}) vs {p2} (e.g. {r2[0]}); "
                "re-evaluate under one protocol or pass allow_mixed_protocols=True (--allow-mixed-protocols)")


# ----------------------------------------------------------------------------------------------
# Collect
# ----------------------------------------------------------------------------------------------
def collect(sweep_dir: os.PathLike | str, allow_mixed_protocols: bool = False, write: bool = True) -> pd.DataFrame:
    """Tidy DataFrame of every run in `sweep_dir`; writes results.csv and results.parquet there.

    Failed or unfinished runs keep NaN rows with their status (a warning says which). Raises
    ProtocolMismatchError when one metric column mixes protocols, unless `allow_mixed_protocols`.
    """
    sweep = Path(sweep_dir)
    if sweep.exists() and not sweep.is_dir():
        raise CollectError(f"{str(sweep)!r} is a file, not a sweep folder (results/<sweep>, holding run folders)")
    if not sweep.is_dir():
        raise CollectError(f"sweep folder {str(sweep)!r} does not exist")
    dirs = run_dirs(sweep)
    if not dirs:
        raise CollectError(f"sweep folder {str(sweep)!r} holds no run folders (with config.json/result.json)")
    df = _tidy(pd.DataFrame([row for d in dirs for row in _run_rows(d, sweep)]))
    if not allow_mixed_protocols:
        check_protocols(df)
    if write:
        with all_or_nothing():  # the two tables always hold the same rows
            with atomic_file(sweep / "results.csv") as tmp:
                df.to_csv(tmp, index=False)
            with atomic_file(sweep / "results.parquet") as tmp:
                _parquet_safe(df).to_parquet(tmp, index=False)
    return df


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Base columns first, then axes, then protocol columns; rows in run/task/method/metric order."""
    for col in BASE_COLUMNS:
        if col not in df.columns:
            df[col] = None
    protocol = sorted(protocol_columns(df))
    axes = sorted(c for c in df.columns if c not in BASE_COLUMNS and c not in protocol)
    df = df[[c for c in BASE_COLUMNS if c not in ("features",)] + axes + protocol + ["features"]]
    df["value"] = df["value"].astype(float)
    return df.sort_values(["run_id", "task", "method", "metric"], na_position="last", kind="stable",
                          ignore_index=True)


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding mixed types (an axis with 4 and 'none') become strings for Arrow."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].dropna().map(type).nunique() > 1:
            out[col] = out[col].map(lambda v: None if _isna(v) else str(v))
    return out


def axis_columns(df: pd.DataFrame) -> List[str]:
    """The ablation axes: override keys of the sweep (every column not base, summary or protocol)."""
    fixed = set(BASE_COLUMNS) | set(SUMMARY_COLUMNS)
    return [c for c in df.columns if c not in fixed and not c.startswith(PROTOCOL_PREFIX)]


def variant_label(row: pd.Series | Dict[str, Any], axes: Sequence[str]) -> str:
    """'planner.depth=4, diffusion.sample_steps=10': the last two parts of each axis key."""
    parts = [f"{'.'.join(a.split('.')[-2:])}={row[a]}" for a in axes if not _isna(row[a])]
    return ", ".join(parts) or "base"


# ----------------------------------------------------------------------------------------------
# Summarise over seeds
# ----------------------------------------------------------------------------------------------
def t_interval(values: Iterable[float], confidence: float = 0.95) -> Dict[str, float]:
    """Mean and two-sided t-interval half-width of the non-NaN values (NaN half-width for n < 2)."""
    x = np.asarray([v for v in values if not _isna(v)], dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": half}


def _seed_cost(group: pd.DataFrame, column: str) -> float:
    """A variant's cost over its seeds. Seeds share the architecture, so the costs agree except
    latency, which each run times while a sweep's other runs may be working: other work only adds
    time, so the fastest seed is the best estimate (as within a run, `cost.best_latency`)."""
    values = pd.to_numeric(group[column], errors="coerce")
    return values.min() if column == "latency_sample_s" else values.mean()


def variant_costs(df: pd.DataFrame, column: str) -> Dict[str, float]:
    """{variant label: its cost in `column` over its finished seeds} (`_seed_cost`), model runs only."""
    runs = df[(df["method"] == "model") & (df["status"] == "DONE")].drop_duplicates("run_id")
    axes = axis_columns(df)
    labels = runs.apply(lambda row: variant_label(row, axes), axis=1) if len(runs) else pd.Series(dtype=str)
    return {label: float(_seed_cost(group, column)) for label, group in runs.groupby(labels)}


def summarise(df: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean +- t-interval over seeds per variant x dataset x task x method x metric.

    NaN values (failed runs) are left out of the mean and counted in `n_missing`; a variant
    whose every seed failed has a NaN mean, never 0.
    """
    axes = axis_columns(df)
    keys = axes + ["dataset", "task", "method", "metric"]
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=False):
        first = group.iloc[0]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(variant=variant_label(first, axes), planner=first["planner"], generator=first["generator"],
                   runs=group["run_id"].nunique(), n_missing=int(group["value"].isna().sum()))
        row.update(t_interval(group["value"], confidence))
        row.update({c: _seed_cost(group, c) for c in COST_COLUMNS})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["ci_low"], out["ci_high"] = out["mean"] - out["ci95"], out["mean"] + out["ci95"]
    return out[["variant"] + keys + ["planner", "generator", "runs", "n", "n_missing", "mean", "std", "ci95",
                                     "ci_low", "ci_high"] + list(COST_COLUMNS)]
