"""Reference results: freeze a sweep, then set another sweep beside it with the right test."""

from __future__ import annotations

import pandas as pd

from fake_runs import make_sweep
from mardini_bench.analysis import sweep_report
from mardini_bench.analysis.reference import PER_VIDEO, compare_reference, load_reference, per_video_frame
from mardini_bench.analysis.results import collect

POINTS = [({"model.planner.depth": 2}, 0.6), ({"model.planner.depth": 4}, 0.9)]


def test_a_saved_reference_agrees_with_itself_and_tells_a_worse_sweep_apart(tmp_path):
    sweep = make_sweep(tmp_path / "grid", POINTS)
    assert sweep_report.main([str(sweep), "--n-boot", "20", "--save-reference", str(tmp_path / "ref")]) == 0
    saved = pd.read_csv(tmp_path / "ref" / PER_VIDEO)
    assert set(saved["metric"]) == {"psnr", "ssim"} and saved["video_index"].max() > 0
    ref = load_reference(tmp_path / "ref")

    same = compare_reference(collect(sweep, write=False), per_video_frame(sweep, sorted(saved["run_id"].unique())),
                             ref, n_boot=100)
    psnr = same[same["metric"] == "PSNR"]
    assert len(psnr) == 4 and (psnr["test"] == "paired bootstrap (same clips)").all()  # 2 variants x 2 tasks
    assert (same["verdict"] == "agrees").all()
    assert (same[same["metric"] == "FVD"]["test"] == "Welch over seeds").all()

    worse = make_sweep(tmp_path / "mine", [(o, q - 0.4) for o, q in POINTS])
    assert sweep_report.main([str(worse), "--n-boot", "40", "--reference", str(tmp_path / "ref")]) == 0
    text = (worse / "report.md").read_text()
    assert "This sweep vs reference ref" in text and "reference better" in text


def test_a_folder_that_is_not_a_reference_is_one_error_line(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "grid", POINTS[:1], seeds=(0,))
    assert sweep_report.main([str(sweep), "--reference", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.csv" in err and "--save-reference" in err


def test_steps_to_a_fixed_loss_ranks_the_faster_variant_first():
    import numpy as np

    from mardini_bench.analysis.plots import steps_to_loss

    steps = np.arange(0, 300, 5)
    rng = np.random.default_rng(0)

    def log(rate: float) -> pd.DataFrame:  # exponential decay to 0.3 plus batch noise
        return pd.DataFrame({"step": steps, "loss": 0.3 + 0.7 * np.exp(-rate * steps) + rng.normal(0, 0.02, len(steps))})

    table = steps_to_loss({"identity=True": [log(0.03) for _ in range(3)],
                           "identity=False": [log(0.015) for _ in range(3)]}).set_index("variant")
    assert (table["reached"] == "3/3").all()
    assert table.loc["identity=True", "step (mean)"] < 0.7 * table.loc["identity=False", "step (mean)"]


def test_a_sweep_of_variants_gets_one_chart_per_task_with_the_baselines(tmp_path):
    sweep = make_sweep(tmp_path / "grid", POINTS, seeds=(0, 1))
    assert sweep_report.main([str(sweep), "--n-boot", "10"]) == 0
    charts = sorted(p.name for p in (sweep / "plots").glob("variants_*.png"))
    assert charts == ["variants_image_to_video.png", "variants_interpolation.png"]
    assert "variants_interpolation.png" in (sweep / "report.md").read_text()
