"""Learning speed: quality against wall-clock training time, beside the trivial baselines on the same clips.

    python benchmarks/bench_learning.py                          # tiny and small, their recipes, 5 checkpoints
    python benchmarks/bench_learning.py --presets small --points 4 eval.num_videos=32
    python benchmarks/bench_learning.py --presets tiny train.steps=600 --out /tmp/bench_learning
    python benchmarks/bench_learning.py --presets gpu --points 6 eval.num_videos=256 data.num_eval=256 \
        data.num_train=32768                                     # the learning curve on one GPU

Each preset trains once with its own recipe (`model=NAME` brings lr, warm-up, batch and steps) on the
default synthetic clips; at `--points` evenly spaced steps the run pauses, and the EMA model is scored
on every task of `eval.tasks` (FVD, PSNR, SSIM by default) with the same code, clips and seeds as a
sweep's evaluation. The table prints, per preset, task and checkpoint: training seconds so far,
training throughput (clips/s), and each metric beside `copy_nearest` and `linear_blend`. The last
lines give the crossover: the first checkpoint (and its training time) where the model beats each
baseline on each metric, or "not within budget". Each row is also appended to `--out`/learning.jsonl as
it is measured, and `--out`/learning_curve.png draws each metric against training seconds per task,
one line per preset, with the baselines as horizontal lines.

FVD needs the I3D weights (`python -m mardini_bench.weights fetch` or $MARDINI_BENCH_WEIGHTS); without
them, pass eval.metrics=[psnr,ssim].
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional

from mardini_bench.analysis.significance import lower_is_better
from mardini_bench.args import add_overrides, add_threads, script_parser
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.io import append_jsonl, atomic_file
from mardini_bench.runtime import configure_threads
from mardini_bench.run.evaluate import evaluate
from mardini_bench.run.train import train

BASELINES = ("copy_nearest", "linear_blend")


def checkpoints(steps: int, points: int) -> List[int]:
    """`points` evenly spaced steps ending at `steps` (each at least 1, no repeats)."""
    return sorted({max(1, round(steps * (i + 1) / points)) for i in range(points)})


def scores(records: List[Dict]) -> Dict[tuple, float]:
    """{(task, method, metric): value} from evaluation records."""
    return {(r["task"], r["method"], r["metric"]): r["value"] for r in records}


def beats(model: float, baseline: float, metric: str) -> bool:
    return model < baseline if lower_is_better(metric) else model > baseline


def run_preset(preset: str, overrides: List[str], points: int, out: Path) -> List[Dict]:
    """Train `preset` in `out/preset`, scoring at each checkpoint; one row per (checkpoint, task)."""
    cfg = apply_overrides(RunConfig(), [f"model={preset}", "eval.baselines=[copy_nearest,linear_blend]",
                                        "eval.metrics=[fvd,psnr,ssim]", "eval.num_videos=64",
                                        "eval.seed=90210", *overrides])
    run_dir, rows = out / preset, []
    for step in checkpoints(cfg.train.steps, points):
        trained = train(cfg, run_dir, until=step)
        values = scores(evaluate(trained.model, cfg, run_dir / f"step_{step:06d}"))
        wall = trained.summary["wall_s"]
        for task in cfg.eval.tasks:
            row = {"preset": preset, "step": step, "train_s": wall,
                   "clips_per_s": step * cfg.train.batch_size / wall, "task": task}
            for metric in cfg.eval.metrics:
                for method in ("model", *BASELINES):
                    row[f"{metric}/{method}"] = values.get((task, method, metric), math.nan)
            rows.append(row)
            append_jsonl(out / "learning.jsonl", row)
            print(json.dumps(row), flush=True)
    return rows


def plot_curves(rows: List[Dict], metrics: List[str], path: Path) -> Path:
    """Each metric (rows) of each task (columns) against training seconds, one line per preset; each
    baseline a horizontal line (it does not train: its value is the same at every checkpoint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axs = plt.subplots(len(metrics), len(tasks), figsize=(4.2 * len(tasks), 3.2 * len(metrics)), squeeze=False)
    for i, metric in enumerate(metrics):
        for j, task in enumerate(tasks):
            ax, mine = axs[i][j], [r for r in rows if r["task"] == task]
            for preset in dict.fromkeys(r["preset"] for r in mine):
                line = [r for r in mine if r["preset"] == preset]
                ax.plot([r["train_s"] for r in line], [r[f"{metric}/model"] for r in line], "o-", label=preset)
            for k, base in enumerate(BASELINES):
                ax.axhline(mine[-1][f"{metric}/{base}"], color=f"C{k + 5}", ls="--", lw=1, label=base)
            arrow = "lower is better" if lower_is_better(metric) else "higher is better"
            ax.set(xlabel="training seconds", ylabel=f"{metric.upper()} ({arrow})", title=task)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def print_table(rows: List[Dict], metrics: List[str]) -> None:
    head = f"{'preset':<7} {'task':<15} {'step':>5} {'train s':>8} {'clips/s':>7}"
    for m in metrics:
        head += f"  {m + ' model/copy/blend':>26}"
    print(head)
    for r in rows:
        line = f"{r['preset']:<7} {r['task']:<15} {r['step']:>5} {r['train_s']:>8.0f} {r['clips_per_s']:>7.1f}"
        for m in metrics:
            vals = [r[f"{m}/{k}"] for k in ("model", *BASELINES)]
            line += "  " + f"{vals[0]:8.2f}/{vals[1]:8.2f}/{vals[2]:8.2f}"
        print(line)


def crossovers(rows: List[Dict], metrics: List[str]) -> List[str]:
    """Per preset, task, metric and baseline: the first checkpoint where the model beats the baseline."""
    lines = []
    keys = sorted({(r["preset"], r["task"]) for r in rows})
    for preset, task in keys:
        mine = [r for r in rows if (r["preset"], r["task"]) == (preset, task)]
        for metric in metrics:
            for base in BASELINES:
                hit = next((r for r in mine if beats(r[f"{metric}/model"], r[f"{metric}/{base}"], metric)), None)
                when = (f"at step {hit['step']} ({hit['train_s']:.0f} s of training)" if hit
                        else f"not within {mine[-1]['step']} steps ({mine[-1]['train_s']:.0f} s)")
                lines.append(f"{preset:<7} {task:<15} {metric:<5} beats {base:<13} {when}")
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--points", type=int, default=5, help="checkpoints scored along each run")
    add_threads(ap)
    ap.add_argument("--out", type=Path, default=Path("results/bench_learning"))
    add_overrides(ap, help="dotted overrides for every preset, e.g. train.steps=600")
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    rows: List[Dict] = []
    for preset in args.presets:
        rows += run_preset(preset, args.overrides, args.points, args.out)
    metrics = [k.split("/")[0] for k in rows[0] if k.endswith("/model")]
    print(f"\nlearning benchmark, {threads} threads; eval: 64 held-out clips (eval.seed=90210) unless overridden")
    print_table(rows, metrics)
    print("\ncrossover (first checkpoint where the model beats the baseline):")
    print("\n".join(crossovers(rows, metrics)))
    print(f"\nlearning curve: {plot_curves(rows, metrics, args.out / 'learning_curve.png')}")


if __name__ == "__main__":
    main()
