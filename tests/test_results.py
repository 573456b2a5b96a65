"""collect / summarise / significance / tables / report on fabricated run folders, and the ablation grids."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fake_runs import make_run, make_sweep, protocol
from mardini_bench.analysis import plots, results, significance, sweep_report, tables
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.io import exclusive_lock
from mardini_bench.metrics import bootstrap
from mardini_bench.run import state

REPO = Path(__file__).resolve().parents[1]
DEPTHS = [({"model.planner.depth": 2}, 0.4), ({"model.planner.depth": 4}, 0.85)]
DEPTHS_BELOW_COPY = [({"model.planner.depth": 2}, 0.5), ({"model.planner.depth": 4}, 0.6)]
DEPTHS_ABOVE_BASELINES = [({"model.planner.depth": 2}, 0.7), ({"model.planner.depth": 4}, 0.9)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """2 planner depths x 3 seeds; depth 4 seed 2 failed."""
    return make_sweep(tmp_path_factory.mktemp("sweep") / "depth", DEPTHS, fail=[(1, 2)])


@pytest.fixture(scope="module")
def df(sweep) -> pd.DataFrame:
    with pytest.warns(UserWarning, match="rdepth4_s2 is FAILED"):
        return results.collect(sweep)


# ----------------------------------------------------------------------------------------------
# collect
# ----------------------------------------------------------------------------------------------
def test_collect_is_tidy_with_axes_protocol_and_cost(df, sweep):
    assert len(df) == 6 * 2 * 3 * 4  # runs x tasks x methods x metrics
    for col in ("run_id", "status", "seed", "model.planner.depth", "task", "method", "metric", "value",
                "protocol.implementation", "protocol.num_videos", *results.COST_COLUMNS):
        assert col in df.columns, col
    assert results.axis_columns(df) == ["model.planner.depth"]
    assert not df.duplicated(["run_id", "task", "method", "metric"]).any()
    stored = json.loads((sweep / "rdepth2_s1" / "result.json").read_text())["records"]
    psnr = next(r for r in stored if (r["task"], r["method"], r["metric"]) == ("interpolation", "model", "psnr"))
    row = df[(df.run_id == "rdepth2_s1") & (df.task == "interpolation") & (df.method == "model") & (df.metric == "psnr")]
    assert row["value"].item() == pytest.approx(psnr["value"])
    back = pd.read_parquet(sweep / "results.parquet")
    assert len(back) == len(df) and (sweep / "results.csv").exists()
    assert not list(sweep.glob(".*.tmp"))


def test_failed_run_is_nan_with_status_never_zero(df):
    failed = df[df.run_id == "rdepth4_s2"]
    assert len(failed) == 2 * 3 * 4  # its expected rows are all still there
    assert (failed["status"] == "FAILED").all() and failed["value"].isna().all()
    assert failed["error"].iloc[0] == "RuntimeError: loss is NaN at step 40"
    assert np.isnan(failed["params_planner"]).all()
    done = df[df.run_id != "rdepth4_s2"]
    assert (done["status"] == "DONE").all() and done["value"].notna().all() and (done["value"] != 0).all()


def test_unfinished_run_states(tmp_path):
    make_run(tmp_path, {"model.planner.depth": 2}, 0, 0.5)
    for name, marker in (("queued", "submitted.json"), ("busy", "started.json"), ("lost", None)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"seed": 0, "eval": {"tasks": ["interpolation"],
                                                                           "metrics": ["fvd"], "baselines": []}}))
        if marker:
            (run / marker).write_text("{}")
    with exclusive_lock(tmp_path / "busy" / state.LOCK) as held, pytest.warns(UserWarning):  # its job is running
        assert held
        got = results.collect(tmp_path, write=False).drop_duplicates("run_id").set_index("run_id")["status"]
    assert got.to_dict() == {"busy": "RUNNING", "lost": "MISSING", "queued": "PENDING", "rdepth2_s0": "DONE"}


def test_collect_says_what_status_says(tmp_path):
    """A run's state has one definition (run/state.py): the status column is the sweep's `status`, LOST
    (a job that started and no longer holds its run lock) included."""
    make_run(tmp_path, {"model.planner.depth": 2}, 0, 0.5)
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid is gone
    markers = {"queued": (state.SUBMITTED, {}), "dead": (state.STARTED, {"host": state.this_host(), "pid": child.pid}),
               "failed": (state.FAILED, {"type": "RuntimeError", "message": "loss is NaN"}), "bare": None}
    for name, marker in markers.items():
        run = tmp_path / name
        run.mkdir()
        (run / state.CONFIG).write_text(json.dumps({"seed": 0, "eval": {"tasks": ["interpolation"],
                                                                      "metrics": ["fvd"], "baselines": []}}))
        if marker:
            (run / marker[0]).write_text(json.dumps(marker[1]))
    with pytest.warns(UserWarning):
        got = results.collect(tmp_path, write=False).drop_duplicates("run_id").set_index("run_id")
    assert {run_id: state.run_state(tmp_path / run_id)[0] for run_id in got.index} == got["status"].to_dict()
    assert got["status"].to_dict() == {"bare": "MISSING", "dead": "LOST", "failed": "FAILED", "queued": "PENDING",
                                       "rdepth2_s0": "DONE"}
    assert f"its job (process {child.pid}) ended without a result" in got.loc["dead", "error"]
    assert got.loc["failed", "error"] == "RuntimeError: loss is NaN" and pd.isna(got.loc["rdepth2_s0", "error"])


def test_mixing_two_fvd_protocols_fails_naming_both(tmp_path):
    make_run(tmp_path, {"model.planner.depth": 2}, 0, 0.5)
    other = protocol("fvd", implementation="tats/i3d_tf", resize="bicubic")
    make_run(tmp_path, {"model.planner.depth": 4}, 0, 0.5, fvd_protocol=other)
    with pytest.raises(results.ProtocolMismatchError) as err:
        results.collect(tmp_path)
    message = str(err.value)
    assert "'fvd'" in message and "tats/i3d_tf" in message and "mardini_bench.metrics/i3d" in message
    assert "bicubic" in message and "allow_mixed_protocols" in message
    assert not (tmp_path / "results.csv").exists()  # nothing written for a refused collect
    mixed = results.collect(tmp_path, allow_mixed_protocols=True)
    assert set(mixed[mixed.metric == "fvd"]["protocol.implementation"]) == {"tats/i3d_tf", "mardini_bench.metrics/i3d"}


def test_cached_real_stats_is_the_same_protocol(tmp_path):
    make_run(tmp_path, {"model.planner.depth": 2}, 0, 0.5)
    make_run(tmp_path, {"model.planner.depth": 4}, 0, 0.5, fvd_protocol=protocol("fvd", real_stats="cached"))
    assert results.collect(tmp_path, write=False)["value"].notna().all()


def test_eval_axes_split_columns(tmp_path):
    """Clip length 9 vs 13 (paper Table 3) changes the eval set: separate columns, never paired."""
    for seed in (0, 1):
        make_run(tmp_path, {"data.frames": 9}, seed, 0.5)
        make_run(tmp_path, {"data.frames": 13}, seed, 0.6, fvd_protocol=protocol("fvd", frames=13))
    df = results.collect(tmp_path, write=False)
    assert "data.frames" in results.column_keys(df)
    tests = significance.compare(df, tmp_path, n_boot=20)
    between_variants = tests[~tests["variant_b"].str.startswith(significance.BASELINE_PREFIX)]
    assert between_variants.empty  # 9 and 13 frames are never paired with each other
    assert set(tests["variant_a"].str.contains("13")) == {True, False}  # each still meets its own baselines
    marked = significance.mark_best(results.summarise(df), tests)
    assert marked[(marked.method == "model")]["best"].all()  # each is the only variant of its column


def test_collect_errors_name_the_folder(tmp_path):
    with pytest.raises(results.CollectError, match="does not exist"):
        results.collect(tmp_path / "nope")
    with pytest.raises(results.CollectError, match="holds no run folders"):
        results.collect(tmp_path)


# ----------------------------------------------------------------------------------------------
# summarise: t-interval over seeds
# ----------------------------------------------------------------------------------------------
def test_summarise_t_interval_matches_scipy_and_skips_nan(df):
    summary = results.summarise(df)
    row = summary[(summary["model.planner.depth"] == 4) & (summary.task == "interpolation")
                  & (summary.method == "model") & (summary.metric == "fvd")].iloc[0]
    values = df[(df["model.planner.depth"] == 4) & (df.task == "interpolation") & (df.method == "model")
                & (df.metric == "fvd")]["value"].dropna().to_numpy()
    assert (row["n"], row["n_missing"], row["runs"]) == (2, 1, 3)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert row["mean"] == pytest.approx(values.mean())
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_a_variants_latency_is_its_fastest_seed_and_other_costs_the_mean(tmp_path):
    # Seeds share the architecture; a slow seed's latency was timed beside other runs' work.
    runs = [make_run(tmp_path, {"model.planner.depth": 2}, seed, 0.5) for seed in (0, 1, 2)]
    for run, latency, mem in zip(runs, (0.9, 0.3, 0.6), (100.0, 110.0, 120.0)):
        result = json.loads((run / "result.json").read_text())
        result["cost"].update(latency_sample_s=latency, peak_mem_mb=mem)
        (run / "result.json").write_text(json.dumps(result))
    summary = results.summarise(results.collect(tmp_path, write=False))
    assert (summary["latency_sample_s"] == 0.3).all() and (summary["peak_mem_mb"] == 110.0).all()


def test_t_interval_edge_cases():
    assert math.isnan(results.t_interval([math.nan, math.nan])["mean"])  # all failed: NaN, never 0
    one = results.t_interval([3.0, math.nan])
    assert one["mean"] == 3.0 and math.isnan(one["ci95"])
    assert results.t_interval([2.0, 2.0, 2.0])["ci95"] == 0.0


# ----------------------------------------------------------------------------------------------
# significance
# ----------------------------------------------------------------------------------------------
def test_paired_bootstrap_detects_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(0)
    clips = rng.normal(25, 3, size=40)  # per-clip difficulty shared by both variants: pairing removes it
    same = [bootstrap.per_video_scorer(clips + rng.normal(0, 0.2, 40)) for _ in range(3)]
    also_same = [bootstrap.per_video_scorer(clips + rng.normal(0, 0.2, 40)) for _ in range(3)]
    better = [bootstrap.per_video_scorer(clips + 0.5 + rng.normal(0, 0.2, 40)) for _ in range(3)]
    gap = bootstrap.paired_bootstrap(same, better, 40, n_boot=300, rng=np.random.default_rng(1))
    null = bootstrap.paired_bootstrap(same, also_same, 40, n_boot=300, rng=np.random.default_rng(1))
    assert gap["p_value"] < 0.01 and gap["ci_low"] > 0 and gap["delta"] == pytest.approx(0.5, abs=0.15)
    assert null["p_value"] > 0.05 and null["ci_low"] < 0 < null["ci_high"]


def test_frechet_scorer_reproduces_recorded_values(sweep):
    """FVD from features (per video) and FID from per-frame features grouped by video_index."""
    record = json.loads((sweep / "rdepth2_s0" / "result.json").read_text())["records"]
    for metric in ("fvd", "fid"):
        rec = next(r for r in record if (r["task"], r["method"], r["metric"]) == ("interpolation", "model", metric))
        scorer, n = significance.load_scorer(sweep, "rdepth2_s0", "interpolation", "model", metric)
        assert n == 24 and scorer(np.arange(n)) == pytest.approx(rec["value"], rel=1e-6)


def test_frechet_scorer_low_rank_route_when_fewer_videos_than_dims(tmp_path):
    from mardini_bench.metrics.frechet import frechet_distance, gaussian_stats

    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(10, 40)), rng.normal(0.5, 1.2, size=(10, 40))
    np.savez(tmp_path / "f.npz", real=real, fake=fake)
    scorer = bootstrap.frechet_scorer(tmp_path / "f.npz", ddof=1)
    want = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    assert scorer(np.arange(10)) == pytest.approx(want, rel=1e-5)
    np.savez(tmp_path / "g.npz", fake=fake, real_mu=real.mean(0), real_cov=np.cov(real, rowvar=False))
    assert bootstrap.frechet_scorer(tmp_path / "g.npz", ddof=1)(np.arange(10)) == pytest.approx(want, rel=1e-5)


def test_holm_is_monotone_and_bounded():
    adjusted = significance.holm([0.01, 0.04, 0.03, 0.5])
    assert adjusted.tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_compare_and_marks(df, sweep):
    everything = significance.compare(df, sweep, n_boot=200)
    against = everything["variant_b"].str.startswith(significance.BASELINE_PREFIX)
    comparisons = everything[~against]
    assert len(comparisons) == 2 * 4  # one pair per task x metric
    assert against.sum() == 2 * 4 * 2 * 2  # and every variant against both baselines in every column
    assert comparisons["significant"].all()  # depth 4 is far better on every metric of the fake sweep
    fvd = comparisons[(comparisons.task == "interpolation") & (comparisons.metric == "fvd")].iloc[0]
    assert fvd["delta"] < 0 and (fvd["seeds_a"], fvd["seeds_b"]) == (3, 2)  # failed seed left out
    marked = significance.mark_best(results.summarise(df), comparisons)
    model = marked[marked.method == "model"]
    assert model[model.best]["model.planner.depth"].eq(4).all()
    assert model[~model.best]["differs_from_best"].eq(1.0).all()


# ----------------------------------------------------------------------------------------------
# tables, plots, report
# ----------------------------------------------------------------------------------------------
def test_report_end_to_end(sweep, capsys):
    assert sweep_report.main([str(sweep), "--n-boot", "50"]) == 0
    assert "warning: run rdepth4_s2 is FAILED" in (sweep / "report.md").read_text()
    table = (sweep / "table.md").read_text()
    failed_line = next(line for line in table.splitlines() if line.startswith("| rdepth4_s2 |"))
    assert "FAILED: RuntimeError: loss is NaN at step 40" in failed_line and "n/a" in failed_line
    assert "| baseline: copy_nearest |" in table and "| baseline: linear_blend |" in table
    baseline_line = next(line for line in table.splitlines() if line.startswith("| baseline: copy_nearest |"))
    assert "±" not in baseline_line  # the same clips in every run: one value, no spread to show
    for header in ("FVD", "FID", "PSNR", "SSIM", "params P", "FLOPs/sample", "latency/sample", "peak mem"):
        assert header in table
    ok_line = next(line for line in table.splitlines() if line.startswith("| rdepth2_s0 |"))
    assert "DONE" in ok_line and "n/a" not in ok_line
    assert "224.07" in table  # the paper's Table 2 number beside ours
    html = (sweep / "report.html").read_text()
    images = re.findall(r"src='data:image/(png|gif);base64,([A-Za-z0-9+/=]+)'", html)
    assert {"png", "gif"} <= {kind for kind, _ in images} and len(images) >= 5
    assert base64.b64decode(images[0][1])[:4] == b"\x89PNG"
    assert "<b>" in html and "FAILED" in html and "src='plots/" not in html
    assert (sweep / "report.md").exists() and (sweep / "tables.tex").read_text().count("\\begin{table}") >= 4
    names = {p.name for p in (sweep / "plots").iterdir()}
    assert {"metric_vs_model.planner.depth.png", "fvd_vs_cost.png", "training_curves.png",
            "samples_interpolation.png", "samples_interpolation.gif"} <= names


def test_report_cli_user_errors_exit_2(tmp_path, capsys):
    assert sweep_report.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: sweep folder")
    make_run(tmp_path, {"model.planner.depth": 2}, 0, 0.5)
    make_run(tmp_path, {"model.planner.depth": 4}, 0, 0.5, fvd_protocol=protocol("fvd", num_videos=12))
    assert sweep_report.main([str(tmp_path)]) == 2
    assert "mixes protocols" in capsys.readouterr().err


def test_fig6a_and_fig6c_when_axes_exist(tmp_path):
    points = [({"model.diffusion.sample_steps": s, "model.planner.identity_attention": ia}, q)
              for s, ia, q in ((1, True, 0.3), (25, True, 0.8), (25, False, 0.6))]
    sweep = make_sweep(tmp_path / "f6", points, seeds=(0, 1))
    df = results.collect(sweep, write=False)
    summary = results.summarise(df)
    assert plots.fig6a_ddim(summary, sweep / "plots").name == "fig6a_ddim_steps.png"
    assert plots.fig6c_identity(df, sweep, sweep / "plots").name == "fig6c_identity_attention.png"


def test_a_training_reused_by_a_sibling_counts_once_in_the_identity_curves(tmp_path):
    """gpu_fig6's shape: one identity-on training sampled with 1 and 25 DDIM steps, and one identity-off."""
    points = [({"model.diffusion.sample_steps": s, "model.planner.identity_attention": ia}, q)
              for s, ia, q in ((1, True, 0.8), (25, True, 0.8), (25, False, 0.6))]
    sweep = make_sweep(tmp_path / "f6", points, seeds=(0, 1))
    for seed in (0, 1):  # the 25-step run evaluated the 1-step run's weights: its log is a copy
        copy = sweep / f"rsample_steps25_identity_attentionTrue_s{seed}"
        source = f"rsample_steps1_identity_attentionTrue_s{seed}"
        log = (sweep / source / "log.jsonl").read_text()
        (copy / "log.jsonl").write_text(log + json.dumps({"event": "trained_in", "run_id": source, "step": 60}) + "\n")
    df = results.collect(sweep, write=False)
    groups = plots.identity_curves(df, sweep)
    assert sorted(len(logs) for logs in groups.values()) == [2, 2]  # two seeds each, not 4 against 2
    every = plots._curves(df, sweep, results.axis_columns(df))  # by every axis, each run is its own variant
    assert sum(len(logs) for logs in every.values()) == 6


def test_pareto_front():
    cost = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    fvd = np.array([300.0, 200.0, 250.0, 100.0, 150.0])
    assert plots.pareto_front(cost, fvd).tolist() == [0, 1, 4, 3]


def test_markdown_and_latex_cells():
    frame = pd.DataFrame({"variant": ["a_b"], "FVD": [tables.cell(224.07, 3.1, "fvd", best=True, differs=math.nan)],
                          "SSIM": [tables.cell(0.5, 0.01, "ssim", differs=1.0)]})
    assert frame["FVD"][0] == "**224.1 ± 3.1**" and frame["SSIM"][0] == "0.5000 ± 0.0100†"
    assert tables.cell(math.nan, math.nan, "fvd") == "n/a"
    tex = tables.latex(frame, "t")
    assert "\\textbf{224.1 $\\pm$ 3.1}" in tex and "\\dag" in tex and "a\\_b" in tex


# ----------------------------------------------------------------------------------------------
# model variants against the trivial baselines
# ----------------------------------------------------------------------------------------------
def _summary(rows: list) -> pd.DataFrame:
    """A minimal summary frame: (depth, method, metric, mean over seeds, n seeds) per row."""
    return pd.DataFrame([{"variant": f"planner.depth={d}", "model.planner.depth": d, "dataset": "synthetic",
                          "task": "interpolation", "method": method, "metric": metric, "mean": mean, "n": n,
                          "ci95": 0.5} for d, method, metric, mean, n in rows])


def test_mark_best_flags_variants_worse_than_the_strongest_baseline():
    summary = _summary([
        (2, "model", "psnr", 21.0, 3), (4, "model", "psnr", 24.0, 1),          # higher is better
        (2, "copy_nearest", "psnr", 22.0, 3), (4, "copy_nearest", "psnr", 22.0, 1),
        (2, "linear_blend", "psnr", 20.0, 3), (4, "linear_blend", "psnr", 20.0, 1),
        (2, "model", "fvd", 300.0, 3), (4, "model", "fvd", 150.0, 1),          # lower is better
        (2, "copy_nearest", "fvd", 200.0, 3), (4, "copy_nearest", "fvd", 100.0, 1),  # pooled: 175
        (2, "linear_blend", "fvd", 400.0, 3), (4, "linear_blend", "fvd", 400.0, 1),
        (2, "model", "ssim", 0.5, 3), (4, "model", "ssim", 0.6, 1),            # the best one loses too
        (2, "copy_nearest", "ssim", 0.7, 3), (4, "copy_nearest", "ssim", 0.7, 1)])
    marked = significance.mark_best(summary, pd.DataFrame()).set_index(["method", "metric", "model.planner.depth"])
    model = marked.loc["model"]
    assert model["baseline"].eq("copy_nearest").all()
    assert model.loc[("fvd", 2), "baseline_mean"] == pytest.approx(175.0)  # the mean over all runs, n-weighted
    beaten = {k: b for k, b in model["beaten_by"].items() if isinstance(b, str)}
    assert beaten == {("psnr", 2): "copy_nearest", ("fvd", 2): "copy_nearest", ("ssim", 2): "copy_nearest",
                      ("ssim", 4): "copy_nearest"}
    assert model.loc[("ssim", 4), "best"]  # still the best variant (for †), but never shown bold:
    cells = {k: tables.marked_cell(r, k[0]) for k, r in model.iterrows()}
    assert cells[("psnr", 4)] == "**24.00 ± 0.50**" and cells[("fvd", 4)] == "**150.0 ± 0.5**"
    assert cells[("psnr", 2)] == "21.00 ± 0.50▽" and cells[("fvd", 2)] == "300.0 ± 0.5▽"
    assert cells[("ssim", 4)] == "0.6000 ± 0.5000▽" and not any("**" in cells[("ssim", d)] for d in (2, 4))
    assert marked.loc["copy_nearest"]["beaten_by"].isna().all()  # baselines carry no marks
    lines = sweep_report.baseline_lines(marked.reset_index())
    assert lines == ["interpolation: only 1 of 2 variants beats copy_nearest on FVD (worst 300.0 vs 175.0), "
                     "PSNR (worst 21.00 vs 22.00); no model variant beats copy_nearest on SSIM "
                     "(best 0.6000 vs 0.7000)."]


def test_a_beaten_cell_is_never_bold_and_the_legend_says_so():
    text = tables.cell(20.1, 0.3, "psnr", best=True, differs=1.0, beaten_by="copy_nearest")
    assert text == "20.10 ± 0.30†▽"
    assert tables.cell(20.1, 0.3, "psnr", best=True, beaten_by=None) == "**20.10 ± 0.30**"
    assert "$\\bigtriangledown$" in tables.latex(pd.DataFrame({"PSNR": [text]}), "t")
    assert f"{tables.BEATEN}: the variant's mean over seeds is worse than a trivial baseline's" in tables.LEGEND
    assert f"{tables.BEATEN} cell is never bold" in tables.LEGEND


def _variant_lines(text: str) -> list:
    """Markdown table lines of model variants (every table: summary, Table 2/3/4)."""
    return [line for line in text.splitlines() if line.startswith("| planner.depth=")]


def _summary_cells(lines: list, depth: int) -> list:
    """The FVD, FID, PSNR, SSIM cells of the variant's rows in the per-task summary tables."""
    rows = [line for line in lines if re.match(rf"\| planner\.depth={depth} \| \d+/\d+ \|", line)]
    return [c.strip() for line in rows for c in line.split("|")[3:7]]


def _html_variant_rows(html: str) -> list:
    return re.findall(r"<tr><td>planner\.depth=.*?</tr>", html)


def test_variants_worse_than_copy_nearest_are_flagged_and_never_bold(tmp_path):
    """Interpolation at short gaps: copying the nearest given frame is hard to beat."""
    sweep = make_sweep(tmp_path / "hard", DEPTHS_BELOW_COPY, seeds=(0, 1), baselines={"copy_nearest": 0.95})
    assert sweep_report.main([str(sweep), "--n-boot", "20"]) == 0
    table, tex = (sweep / "table.md").read_text(), (sweep / "tables.tex").read_text()
    assert tables.LEGEND in table
    lines = _variant_lines(table)
    assert len(lines) == 2 * 2 + 2 + 2 + 2  # summary per task, Tables 2, 3 and 4
    assert all("**" not in line and "▽" in line for line in lines)
    cells = _summary_cells(lines, 2) + _summary_cells(lines, 4)
    assert len(cells) == 2 * 2 * 4 and all(c.endswith("▽") for c in cells)  # the best variant too
    assert "\\textbf" not in tex and "$\\bigtriangledown$" in tex
    html = (sweep / "report.html").read_text()
    rows = _html_variant_rows(html)
    assert rows and all("<b>" not in r and "▽" in r for r in rows)
    assert "Model variants vs trivial baselines" in html and html.count("▽") > len(rows)  # cells + legend
    marked = significance.mark_best(results.summarise(results.collect(sweep, write=False)), pd.DataFrame())
    psnr = marked[(marked.task == "interpolation") & (marked.method == "model") & (marked.metric == "psnr")]
    best, base = (tables.number(v, "psnr") for v in (psnr.loc[psnr["best"], "mean"].item(),
                                                     psnr["baseline_mean"].iloc[0]))
    assert "<p>interpolation: no model variant beats copy_nearest on FVD (best " in html
    assert f"PSNR (best {best} vs {base})" in html
    copy_row = next(line for line in table.splitlines() if line.startswith("| baseline: copy_nearest |"))
    assert f" {base} " in copy_row  # the line quotes the number the table prints


def test_variants_that_beat_the_baselines_keep_normal_bolding(tmp_path):
    sweep = make_sweep(tmp_path / "easy", DEPTHS_ABOVE_BASELINES, seeds=(0, 1))
    assert sweep_report.main([str(sweep), "--n-boot", "20"]) == 0
    table, tex = (sweep / "table.md").read_text(), (sweep / "tables.tex").read_text()
    lines = _variant_lines(table)
    assert all("▽" not in line for line in lines)
    best, other = _summary_cells(lines, 4), _summary_cells(lines, 2)
    assert len(best) == len(other) == 2 * 4
    assert all(c.startswith("**") for c in best) and not any("**" in c for c in other)
    assert "\\textbf" in tex and "bigtriangledown" not in tex
    html = (sweep / "report.html").read_text()
    assert all("▽" not in r for r in _html_variant_rows(html))
    assert any("<b>" in r for r in _html_variant_rows(html))
    for task in ("image_to_video", "interpolation"):
        assert f"<p>{task}: all variants beat both baselines on FVD, FID, PSNR, SSIM.</p>" in html


# ----------------------------------------------------------------------------------------------
# the paper's numbers and the ablation grids
# ----------------------------------------------------------------------------------------------
def _paper_md_rows(text: str, heading: str) -> list:
    block = text.split(heading, 1)[1].split("\n### ", 1)[0]
    return [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


def test_paper_tables_csv_matches_the_paper_notes(shared_dir):
    """Every number in results/paper/paper_tables.csv equals the one in the paper notes, §5."""
    text = (shared_dir / "docs" / "mardini-paper.md").read_text()
    paper = tables.load_paper(REPO / "results" / "paper" / "paper_tables.csv")
    t2 = paper[paper.table == "table2"]
    got2 = sorted(float(v) for v in t2["value"])
    want2 = sorted(float(v) for row in _paper_md_rows(text, "### Table 2") for v in row[2:])
    assert got2 == want2 and len(want2) == 10
    t4 = paper[paper.table == "table4"]
    for row in _paper_md_rows(text, "### Table 4"):
        mine = t4[t4.row_label == row[0]]["value"].astype(float).tolist()
        assert mine == [float(v) for v in row[1:]], row[0]
    t3 = paper[(paper.table == "table3") & (paper.value != "")]
    want3 = {float(v.split()[0]) for row in _paper_md_rows(text, "### Table 3") for v in row[3:]
             if v[:1].isdigit()}
    assert set(t3["value"].astype(float)) == want3


def _grid_points(grid: dict) -> list:
    product, zipped = grid.get("grid", {}), grid.get("zip", {})
    rows = list(zip(*zipped.values())) if zipped else [()]
    keys = list(product) + list(zipped)
    fmt = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    return [list(grid["base"]) + [f"{k}={fmt(v)}" for k, v in zip(keys, combo + row)] + [f"seed={s}"]
            for combo in itertools.product(*product.values()) for row in rows for s in grid.get("seeds", [0])]


GRIDS = ["table2", "table3", "fig6a_ddim_steps", "fig6c_identity", "mask_schedule", "generator_size",
         "attention_type", "planner_depth"]


@pytest.mark.parametrize("name", GRIDS)
def test_every_point_of_every_grid_resolves(name):
    path = REPO / "ablations" / f"{name}.toml"
    text = path.read_text()
    assert text.startswith("# "), "each grid opens with a comment on what it reproduces"
    grid = tomllib.loads(text)
    assert grid["name"] == name and grid["description"]
    points = _grid_points(grid)
    assert len(points) >= 2 * len(grid.get("seeds", [0]))
    try:
        configs = [apply_overrides(RunConfig(), p) for p in points]
    except ModuleNotFoundError as err:  # a registry's module (e.g. the dataset registry) not installed yet
        pytest.skip(f"registry module {err.name} is not importable")
    varied = {tuple(p[len(grid["base"]):-1]) for p in points}
    assert len({repr(c) for c in configs}) == len(varied) * len(grid.get("seeds", [0]))


def test_training_log_of_a_restarted_run_counts_each_step_once(tmp_path):
    from mardini_bench.analysis.plots import read_log

    lines = [{"step": 1, "loss": 3.0}, {"step": 11, "loss": 2.0}, {"event": "resume", "step": 0},
             {"step": 1, "loss": 2.5}, {"step": 11, "loss": 1.5}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = read_log(tmp_path)
    assert log["step"].tolist() == [1, 11] and log["loss"].tolist() == [2.5, 1.5]


def test_model_variants_are_tested_against_each_baseline_on_the_same_clips(tmp_path):
    """A variant far better than both baselines wins significantly; one between them beats copy_nearest
    significantly and loses to linear_blend (the direction follows the metric: FVD lower, PSNR higher)."""
    sweep = make_sweep(tmp_path / "vs", [({"model.planner.depth": 2}, 0.9), ({"model.planner.depth": 4}, 0.38)],
                       baselines={"copy_nearest": 0.3, "linear_blend": 0.5})
    df = results.collect(sweep, write=False)
    tests = significance.compare(df, sweep, n_boot=300)
    vs = tests[tests["variant_b"].str.startswith(significance.BASELINE_PREFIX)]
    good = vs[vs["variant_a"].str.contains("2")]
    assert good["significant"].all()
    assert (good[good.metric == "psnr"]["delta"] < 0).all() and (good[good.metric == "fvd"]["delta"] > 0).all()
    mid = vs[vs["variant_a"].str.contains("4") & (vs.metric == "psnr")]
    assert (mid[mid["variant_b"].str.endswith("copy_nearest")]["delta"] < 0).all()
    assert (mid[mid["variant_b"].str.endswith("linear_blend")]["delta"] > 0).all()
    lines = sweep_report._against_baselines(vs)
    assert set(lines["baseline"]) == {"copy_nearest", "linear_blend"}
    assert lines[lines["variant"].str.contains("2")]["verdict"].eq("model better, significant").all()
