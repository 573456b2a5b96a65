"""Sweep figures (matplotlib, Agg), saved under `<sweep>/plots/`.

metric vs each ablation axis (CI error bars), one bar per variant beside the baselines per task
(the shape of Table 2), quality vs cost with the Pareto front, training
curves, the paper's Fig. 6a (FVD vs DDIM steps) and Fig. 6c (loss with/without Identity
Attention) when the sweep has those axes, and per-task sample grids (PNG) and GIFs (PIL); MP4s of
samples with PyAV when it is installed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless compute nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mardini_bench.analysis.results import axis_columns, variant_label  # noqa: E402
from mardini_bench.analysis.significance import lower_is_better  # noqa: E402
from mardini_bench.io import atomic_file, read_jsonl  # noqa: E402
from mardini_bench.run.samples import load_samples, sample_gif  # noqa: E402
from mardini_bench.metrics.info import metric_info, metric_names  # noqa: E402

DDIM_AXIS = "model.diffusion.sample_steps"
IDENTITY_AXES = ("model.planner.identity_attention", "model.generator.identity_attention")
COST_AXES = {"flops_sample": "FLOPs per sample", "latency_sample_s": "latency per sample (s)"}


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:  # long tick labels (variant names) are never clipped
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _model(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary["method"] == "model") & summary["task"].notna()]


def _sortable(values: Sequence) -> List:
    """Axis values in numeric order when they are all numbers, else as strings."""
    uniq = list(dict.fromkeys(values))
    try:
        return sorted(uniq, key=float)
    except (TypeError, ValueError):
        return sorted(uniq, key=str)


# ----------------------------------------------------------------------------------------------
# Metric vs axis, quality vs cost
# ----------------------------------------------------------------------------------------------
def metric_vs_axis(summary: pd.DataFrame, axis: str, out: Path) -> Optional[Path]:
    """One panel per metric: mean ± CI against `axis`, one line per task x other-axes setting."""
    model = _model(summary)
    model = model[model[axis].notna()]
    if model[axis].nunique() < 2:
        return None
    metrics = [m for m in metric_names() if m in set(model["metric"])]
    others = [a for a in axis_columns(summary) if a != axis]
    fig, axs = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    order = _sortable(model[axis].dropna())
    for ax, metric in zip(axs[0], metrics):
        part = model[model["metric"] == metric]
        for key, line in part.groupby(["task"] + others, dropna=False, sort=True):
            line = line.set_index(line[axis].map(order.index)).sort_index()
            label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
            ax.errorbar(line.index, line["mean"], yerr=line["ci95"].fillna(0), marker="o", capsize=3, label=label)
        ax.set_xticks(range(len(order)), [str(v) for v in order])
        arrow = "↓" if lower_is_better(metric) else "↑"
        name = metric_info(metric).label
        ax.set(xlabel=axis, ylabel=f"{name} {arrow}", title=f"{name} vs {axis.split('.')[-1]}")
        ax.grid(alpha=0.3)
    axs[0][0].legend(fontsize=7, title="task" + (" / " + ", ".join(o.split(".")[-1] for o in others) if others else ""))
    return _save(fig, out / f"metric_vs_{axis}.png")


def variant_bars(summary: pd.DataFrame, task: str, out: Path) -> Optional[Path]:
    """Paper Table 2 as a chart: one panel per metric, a row per model variant (mean ± 95% CI over seeds),
    each trivial baseline a dashed line, so a variant that loses to copying is seen at a glance."""
    part = summary[summary["task"] == task]
    model = part[part["method"] == "model"]
    if model["variant"].nunique() < 2:
        return None
    metrics = [m for m in metric_names() if m in set(model["metric"])]
    variants = list(dict.fromkeys(model["variant"]))
    width = 4.2 * len(metrics) + 0.065 * max(len(v) for v in variants) + 0.5  # room for the variant labels
    fig, axs = plt.subplots(1, len(metrics), figsize=(width, 0.8 + 0.45 * len(variants)), squeeze=False)
    for ax, metric in zip(axs[0], metrics):
        rows = model[model["metric"] == metric].set_index("variant").reindex(variants)
        # points, not bars from zero: PSNR and SSIM differences are a few percent of the value
        ax.errorbar(rows["mean"], range(len(variants)), xerr=rows["ci95"].fillna(0), fmt="o", capsize=3, color="C0",
                    label="model (mean ± 95% CI)")
        for i, (name, base) in enumerate(part[(part["method"] != "model") & (part["metric"] == metric)]
                                         .groupby("method")["mean"].first().items()):
            ax.axvline(base, color=f"C{i + 1}", ls="--", lw=1, label=name)
        ax.set_yticks(range(len(variants)), variants if ax is axs[0][0] else [""] * len(variants), fontsize=7)
        ax.margins(y=0.15)
        arrow = "↓" if lower_is_better(metric) else "↑"
        ax.set(xlabel=f"{metric_info(metric).label} {arrow}", title=f"{task}: {metric_info(metric).label}")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7)
    return _save(fig, out / f"variants_{task}.png")


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of points no other point beats on both (lower cost, lower quality-loss), by cost."""
    order = np.lexsort((quality, cost))
    front, best = [], math.inf
    for i in order:
        if quality[i] < best:
            front.append(i)
            best = quality[i]
    return np.asarray(front, dtype=int)


def quality_vs_cost(summary: pd.DataFrame, out: Path, metric: str = "fvd") -> Optional[Path]:
    """FVD vs FLOPs and vs latency per task, one point per variant, Pareto front drawn."""
    model = _model(summary)
    model = model[(model["metric"] == metric) & model["mean"].notna()]
    if model.empty:
        return None
    costs = [c for c in COST_AXES if model[c].notna().any()]
    tasks = sorted(model["task"].unique())
    fig, axs = plt.subplots(len(costs), len(tasks), figsize=(4.8 * len(tasks), 3.8 * len(costs)), squeeze=False)
    for r, cost in enumerate(costs):
        for c, task in enumerate(tasks):
            _pareto_panel(axs[r][c], model[(model["task"] == task) & model[cost].notna()], cost, metric, task)
    keys = [a.split(".")[-1] for a in axis_columns(model) if model[a].notna().any()]
    fig.suptitle(f"{metric.upper()} vs cost; points labelled ({', '.join(keys)})", fontsize=9)
    return _save(fig, out / f"{metric}_vs_cost.png")


def _pareto_panel(ax: plt.Axes, part: pd.DataFrame, cost: str, metric: str, task: str) -> None:
    x, y = part[cost].to_numpy(float), part["mean"].to_numpy(float)
    ax.errorbar(x, y, yerr=part["ci95"].fillna(0).to_numpy(), fmt="o", capsize=3, color="tab:blue", label="variant")
    front = pareto_front(x, y if lower_is_better(metric) else -y)
    ax.step(x[front], y[front], where="post", color="tab:red", lw=1.5, label="Pareto front")
    ax.scatter(x[front], y[front], s=90, facecolors="none", edgecolors="tab:red")
    axes = [a for a in axis_columns(part) if part[a].notna().any()]
    for xi, yi, (_, row) in zip(x, y, part.iterrows()):
        label = ", ".join(str(row[a]) for a in axes)  # values only; the suptitle names the axes
        ax.annotate(label, (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if len(x) and x.min() > 0 and x.max() / x.min() > 20:
        ax.set_xscale("log")
    ax.set(xlabel=COST_AXES[cost], ylabel=f"{metric.upper()} ↓" if lower_is_better(metric) else metric.upper(),
           title=task)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


# ----------------------------------------------------------------------------------------------
# Training curves, Fig. 6a, Fig. 6c
# ----------------------------------------------------------------------------------------------
def read_log(run_dir: Path) -> pd.DataFrame:
    """log.jsonl lines with a loss as a frame (step, loss, ...); empty when the run logged none."""
    path = run_dir / "log.jsonl"
    if not path.exists():
        return pd.DataFrame(columns=["step", "loss"])
    lines = read_jsonl(path)  # a partial last line (a run still writing, or killed) is left out
    frame = pd.DataFrame([entry for entry in lines if "loss" in entry and "step" in entry])
    if not len(frame):
        return pd.DataFrame(columns=["step", "loss"])
    return frame.drop_duplicates("step", keep="last")  # a step logged twice: the later attempt counts


def trained_in(run_dir: Path) -> Optional[str]:
    """The sibling run whose training this run reused (its log's `trained_in` event), else None."""
    path = run_dir / "log.jsonl"
    events = read_jsonl(path) if path.exists() else []
    return next((str(e["run_id"]) for e in events if e.get("event") == "trained_in"), None)


def _curves(df: pd.DataFrame, sweep: Path, by: Sequence[str]) -> Dict[str, List[pd.DataFrame]]:
    """label -> training logs of its runs (one per seed), grouping runs by the `by` axes.

    A run that reused a sibling's training holds a copy of its log: where both fall in one group (they
    differ only in an axis read after training, such as DDIM steps) the copy is left out, so that one
    training counts once."""
    runs = df.drop_duplicates("run_id")
    label = {str(run["run_id"]): variant_label(run, by) for _, run in runs.iterrows()}
    groups: Dict[str, List[pd.DataFrame]] = {}
    for run_id, name in label.items():
        if label.get(trained_in(sweep / run_id) or "") == name:
            continue
        log = read_log(sweep / run_id)
        if len(log):
            groups.setdefault(name, []).append(log)
    return groups


def _plot_curves(ax: plt.Axes, groups: Dict[str, List[pd.DataFrame]]) -> None:
    """Mean over seeds per step, with the min-max band of the seeds."""
    for label, logs in sorted(groups.items()):
        table = pd.concat([l.set_index("step")["loss"].rename(i) for i, l in enumerate(logs)], axis=1).sort_index()
        line = ax.plot(table.index, table.mean(axis=1), label=f"{label} (n={len(logs)})")[0]
        if len(logs) > 1:
            ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=line.get_color(), alpha=0.15)
    ax.set(xlabel="step", ylabel="training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def training_curves(df: pd.DataFrame, sweep: Path, out: Path) -> Optional[Path]:
    groups = _curves(df, sweep, axis_columns(df))
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _plot_curves(ax, groups)
    ax.set_title("Training loss (mean over seeds, band = min..max)")
    return _save(fig, out / "training_curves.png")


def _identity_axes(df: pd.DataFrame) -> List[str]:
    return [a for a in IDENTITY_AXES if a in df.columns and df[a].nunique(dropna=True) > 1]


def smoothed(log: pd.DataFrame, window: int) -> pd.Series:
    """Loss by step, a trailing mean over `window` logged points (the diffusion loss of
    one batch swings with its random timesteps, so a raw crossing would measure noise)."""
    return log.set_index("step")["loss"].sort_index().rolling(window, min_periods=1).mean()


def seed_steps_to_loss(groups: Dict[str, List[pd.DataFrame]], window: int = 10) -> Optional[tuple]:
    """(level, {variant: [first step each seed's smoothed loss reaches the level, NaN if never]}).

    The level is 90% of the way from the start to the end of the slowest variant's mean curve: every
    variant gets there within the run when training still helps, and a faster-converging one earlier."""
    if len(groups) < 2:
        return None
    curves = {label: [smoothed(log, window) for log in logs] for label, logs in groups.items()}
    means = {label: pd.concat(c, axis=1).mean(axis=1) for label, c in curves.items()}
    start = max(m.iloc[0] for m in means.values())
    worst_end = max(m.iloc[-1] for m in means.values())
    level = worst_end + 0.1 * (start - worst_end)
    return level, {label: [float(c.index[np.argmax(c.to_numpy() <= level)]) if (c <= level).any() else math.nan
                           for c in seeds] for label, seeds in sorted(curves.items())}


def steps_to_loss(groups: Dict[str, List[pd.DataFrame]], window: int = 10) -> Optional[pd.DataFrame]:
    """`seed_steps_to_loss` as a table: per variant, the mean step and its 95% interval over the seeds
    that reached the level (a seed that never does is said in the `reached` column)."""
    timed = seed_steps_to_loss(groups, window)
    if timed is None:
        return None
    level, per_variant = timed
    rows = []
    for label, steps in per_variant.items():
        ok = [v for v in steps if not math.isnan(v)]
        half = 1.96 * np.std(ok, ddof=1) / math.sqrt(len(ok)) if len(ok) > 1 else math.nan
        rows.append({"variant": label, "loss level": round(level, 4), "seeds": len(steps),
                     "reached": f"{len(ok)}/{len(steps)}",
                     "step (mean)": round(float(np.mean(ok)), 1) if ok else math.nan,
                     "± (95%, normal)": round(half, 1) if not math.isnan(half) else math.nan,
                     "per seed": ", ".join("–" if math.isnan(v) else f"{v:.0f}" for v in steps)})
    return pd.DataFrame(rows)


def identity_curves(df: pd.DataFrame, sweep: Path) -> Dict[str, List[pd.DataFrame]]:
    """Training logs grouped by the Identity Attention switches ({} when the sweep does not vary them)."""
    axes = _identity_axes(df)
    return _curves(df, sweep, axes) if axes else {}


def fig6c_table(df: pd.DataFrame, sweep: Path) -> Optional[pd.DataFrame]:
    """Steps to a fixed loss with vs without Identity Attention (None when the sweep does not vary it)."""
    groups = identity_curves(df, sweep)
    return steps_to_loss(groups) if groups else None


def fig6c_identity(df: pd.DataFrame, sweep: Path, out: Path) -> Optional[Path]:
    """Paper Fig. 6c: loss with vs without Identity Attention, when the sweep varies it: the smoothed
    mean over seeds with the seeds' min-max band, and the level `steps_to_loss` times."""
    axes = _identity_axes(df)
    if not axes:
        return None
    groups = _curves(df, sweep, axes)
    smooth = {label: [smoothed(log, 10).rename("loss").reset_index() for log in logs] for label, logs in groups.items()}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _plot_curves(ax, smooth)
    table = steps_to_loss(groups)
    if table is not None:
        ax.axhline(table["loss level"].iloc[0], color="grey", lw=0.8, ls="--", label="level timed (report table)")
        ax.legend(fontsize=7)
    ax.set_title("Identity Attention on/off: training loss, 10-point mean (cf. paper Fig. 6c)")
    return _save(fig, out / "fig6c_identity_attention.png")


def fig6a_ddim(summary: pd.DataFrame, out: Path) -> Optional[Path]:
    """Paper Fig. 6a: FVD vs DDIM sampling steps (log x), one line per task."""
    if DDIM_AXIS not in summary.columns:
        return None
    part = _model(summary)[lambda d: (d["metric"] == "fvd") & d[DDIM_AXIS].notna()]
    if part[DDIM_AXIS].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for task, line in part.groupby("task"):
        line = line.assign(steps=line[DDIM_AXIS].astype(float)).sort_values("steps")
        ax.errorbar(line["steps"], line["mean"], yerr=line["ci95"].fillna(0), marker="o", capsize=3, label=task)
    ax.set_xscale("log")
    ax.set(xlabel="DDIM sampling steps", ylabel="FVD ↓", title="FVD vs DDIM steps (cf. paper Fig. 6a)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, out / "fig6a_ddim_steps.png")


# ----------------------------------------------------------------------------------------------
# Samples: PNG grid and GIF per task
# ----------------------------------------------------------------------------------------------
def pick_run(df: pd.DataFrame, sweep: Path, task: str) -> Optional[str]:
    """The finished run with the lowest FVD on `task` that saved samples (else any with samples)."""
    part = df[(df["task"] == task) & (df["method"] == "model") & (df["status"] == "DONE")]
    fvd = part[part["metric"] == "fvd"].sort_values("value")
    for run_id in list(fvd["run_id"]) + list(part["run_id"].unique()):
        if (sweep / str(run_id) / "eval" / task / "samples.npz").exists():
            return str(run_id)
    return None


def sample_grid(samples: Dict[str, np.ndarray], title: str, path: Path, videos: int = 3) -> Path:
    """Rows: input then output per clip; columns: frames. Red frame = generated, green = given."""
    n, t = min(videos, len(samples["output"])), samples["output"].shape[1]
    kinds = [k for k in ("input", "output") if k in samples]
    fig, axs = plt.subplots(n * len(kinds), t, figsize=(1.1 * t + 0.8, 1.15 * n * len(kinds) + 0.5), squeeze=False)
    for v in range(n):
        for k, kind in enumerate(kinds):
            for f in range(t):
                ax = axs[v * len(kinds) + k][f]
                ax.imshow(samples[kind][v, f])
                ax.set_xticks([]), ax.set_yticks([])
                color = "tab:red" if samples["mask"][v, f] else "tab:green"
                for spine in ax.spines.values():
                    spine.set(color=color, linewidth=2.5)
                if f == 0:
                    ax.set_ylabel(f"clip {v}\n{kind}", fontsize=8)
                if v == 0 and k == 0:
                    ax.set_title(f"t={f}", fontsize=8)
    fig.suptitle(f"{title}  (red = generated, green = given)", fontsize=9)
    return _save(fig, path)


def samples_for_tasks(df: pd.DataFrame, sweep: Path, out: Path) -> List[Path]:
    paths = []
    for task in sorted(df["task"].dropna().unique()):
        run_id = pick_run(df, sweep, task)
        if run_id is None:
            continue
        samples = load_samples(sweep / run_id / "eval" / task / "samples.npz")
        paths.append(sample_grid(samples, f"{task}: run {run_id}", out / f"samples_{task}.png"))
        paths.append(sample_gif(samples, out / f"samples_{task}.gif"))
    return paths


def make_all(df: pd.DataFrame, summary: pd.DataFrame, sweep_dir: Path | str) -> List[Path]:
    """Every figure the sweep supports; returns the written paths (PNG and GIF)."""
    sweep = Path(sweep_dir)
    out = sweep / "plots"
    made = [metric_vs_axis(summary, a, out) for a in axis_columns(summary)]
    made += [variant_bars(summary, task, out) for task in summary["task"].dropna().unique()]
    made += [quality_vs_cost(summary, out), training_curves(df, sweep, out), fig6a_ddim(summary, out),
             fig6c_identity(df, sweep, out)]
    return [p for p in made if p is not None] + samples_for_tasks(df, sweep, out)
