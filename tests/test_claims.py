"""One verdict per paper claim, read from a sweep's own comparisons or its training curves."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mardini_bench.analysis.claims import (CLAIMS, CLAIMS_FILE, SCALES, TABLE_BEGIN, TABLE_END, ClaimsTableError,
                                           Scale, claim_rows, main, parse_label, render_table, scale_verdicts,
                                           table_span)

MAR_DM_4 = "generator.name=dit, planner.depth=4, planner.mlp_dim=384, planner.name=mar"
MAR_DM_8 = "generator.name=dit, planner.depth=8, planner.mlp_dim=768, planner.name=mar"
DM_ONLY = "generator.name=dit, planner.depth=4, planner.mlp_dim=384, planner.name=none"
MAR_ONLY_4 = "generator.name=none, planner.depth=4, planner.mlp_dim=384, planner.name=mar"


def _comparison(a: str, b: str, mean_a: float, mean_b: float, p: float, metric: str = "fvd") -> dict:
    return {"dataset": "synthetic", "task": "interpolation", "metric": metric, "variant_a": a, "variant_b": b,
            "seeds_a": 3, "seeds_b": 3, "mean_a": mean_a, "mean_b": mean_b, "delta": mean_b - mean_a,
            "p_value": p, "p_holm": p, "significant": p < 0.05}


def test_parse_label_drops_the_model_prefix():
    assert parse_label("model.planner.depth=4, seed=1") == {"planner.depth": "4", "seed": "1"}


def test_pairwise_claims_read_either_order_and_give_the_three_verdicts():
    frame = pd.DataFrame([
        _comparison(DM_ONLY, MAR_DM_4, 885.0, 813.0, 0.08),    # MAR+DM better, not significant
        _comparison(DM_ONLY, MAR_ONLY_4, 885.0, 1304.0, 0.0),  # DM-only better, significant
        _comparison(MAR_DM_4, MAR_DM_8, 700.0, 900.0, 0.01),   # bigger planner worse, significant
        _comparison(DM_ONLY, MAR_DM_4, 0.5, 0.6, 0.01, metric="ssim"),  # another metric: not read
    ])
    rows = claim_rows("table2", frame).set_index("claim")["verdict"]
    assert rows["Table 2: MAR+DM beats DM-only"] == "inconclusive (right direction)"
    assert rows["Table 2: DM-only beats MAR-only"] == "reproduced"
    assert rows["Table 2: a bigger planner helps MAR+DM"] == "contradicted"
    assert "Table 2: a bigger planner helps MAR-only" not in rows  # the sweep lacks MAR-only depth 8
    ours = claim_rows("table2", frame).set_index("claim")["ours"]["Table 2: MAR+DM beats DM-only"]
    assert ours.startswith("interpolation FVD 813 vs 885")


def test_convergence_claim_uses_the_seeds_steps_to_the_level():
    on = "planner.identity_attention=True, generator.identity_attention=True"
    off = "planner.identity_attention=False, generator.identity_attention=False"
    fast = claim_rows("fig6c_identity", pd.DataFrame(), (0.4, {on: [100.0, 110.0, 105.0], off: [200.0, 190.0, 210.0]}))
    assert fast["verdict"].tolist() == ["reproduced"] and "105 vs 200" in fast["ours"].iloc[0]
    same = claim_rows("fig6c_identity", pd.DataFrame(), (0.4, {on: [100.0, 200.0, 150.0], off: [160.0, 140.0, 150.0]}))
    assert same["verdict"].iloc[0].startswith("inconclusive")
    few = claim_rows("fig6c_identity", pd.DataFrame(), (0.4, {on: [100.0, math.nan, math.nan], off: [1.0, 2.0, 3.0]}))
    assert few["verdict"].iloc[0] == "inconclusive (too few seeds reached the level)"


@pytest.mark.parametrize("grid", ["quickstart", "generator_size"])
def test_a_grid_without_claims_has_no_rows(grid):
    assert claim_rows(grid, pd.DataFrame([_comparison(DM_ONLY, MAR_DM_4, 1.0, 2.0, 0.01)])).empty


def test_planner_depth_reads_the_deepest_against_twice_shallower_and_the_shallowest():
    frame = pd.DataFrame([_comparison("planner.depth=4", "planner.depth=8", 820.0, 790.0, 0.2),
                          _comparison("planner.depth=1", "planner.depth=8", 900.0, 790.0, 0.01),
                          _comparison("planner.depth=1", "planner.depth=4", 900.0, 820.0, 0.02)])
    verdicts = claim_rows("planner_depth", frame).set_index("claim")["verdict"]
    assert verdicts.tolist() == ["inconclusive (right direction)", "reproduced"]
    assert verdicts.index[1].endswith("(depth 8 vs 1)")


def test_fig6a_reads_ten_steps_against_a_hundred():
    frame = pd.DataFrame([_comparison("diffusion.sample_steps=100", "diffusion.sample_steps=10", 2680.0, 2510.0, 0.01),
                          _comparison("diffusion.sample_steps=1", "diffusion.sample_steps=10", 1000.0, 2510.0, 0.0)])
    row = claim_rows("fig6a_ddim_steps", frame).iloc[0]
    assert row["verdict"] == "reproduced" and row["ours"].startswith("interpolation FVD 2510 vs 2680")


def test_table3_cost_claims_read_the_ratio_against_the_margin():
    label = "generator.attention={}, planner.downsample={}, data.frames={}".format
    latency = {label("spatiotemporal", 2, 9): 0.07, label("spatiotemporal", 1, 9): 0.10,  # x0.70: reproduced
               label("temporal", 2, 13): 0.095, label("spatiotemporal", 2, 13): 0.10}     # x0.95: inconclusive
    memory = {label("temporal", 2, 13): 400.0, label("spatiotemporal", 1, 13): 300.0}     # x1.33: contradicted
    rows = claim_rows("table3", pd.DataFrame(), None, {"latency_sample_s": latency, "peak_mem_mb": memory})
    verdicts = rows.set_index("claim")["verdict"]
    assert verdicts["Table 3: asymmetric resolution cuts sampling latency (9 frames)"] == "reproduced"
    assert verdicts["Table 3: asymmetric attention cuts sampling latency (13 frames)"].startswith("inconclusive")
    assert verdicts["Table 3: both asymmetries cut peak memory (13 frames)"] == "contradicted"
    assert "(x0.70)" in rows["ours"].iloc[0]
    assert claim_rows("table3", pd.DataFrame(), None, {"latency_sample_s": {}}).empty


# -- the README's claims table --------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
SHIPPED = [replace(scale, root=REPO / scale.root) for scale in SCALES]  # CPU, and GPU from the gpu_* grids
CPU = [Scale("CPU", REPO / "results/reference")]


def test_the_readme_claims_table_is_the_one_generated_from_the_references():
    text = (REPO / "README.md").read_text()
    start, end = table_span(text, "README.md")
    assert text[start:end] == render_table(SHIPPED), "run: python -m mardini_bench.analysis.claims --write README.md"
    frozen = set().union(*(rows for _, rows in scale_verdicts(SHIPPED)))
    assert text[start:end].count("\n") == 2 + len(frozen)  # header, rule, one row per frozen claim
    assert text[start:end].splitlines()[0].endswith("| CPU verdict | GPU scale: ours (grid; test) | GPU verdict |")


def test_claims_command_checks_then_writes_the_table_in_place(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{TABLE_BEGIN}\n| stale |\n{TABLE_END}\n\nafter\n")
    scale = ["--scale", f"CPU={REPO / 'results/reference'}"]
    assert main(["--check", str(readme), *scale]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--write" in err[0]
    assert main(["--write", str(readme), *scale]) == 0
    assert readme.read_text() == f"# title\n\n{TABLE_BEGIN}\n{render_table(CPU)}{TABLE_END}\n\nafter\n"
    assert main(["--check", str(readme), *scale]) == 0


@pytest.mark.parametrize("argv", [["--check", "README.md"], ["--scale", "CPU"], ["--write", "x", "--check", "y"]])
def test_claims_command_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, argv):
    (tmp_path / "README.md").write_text("no markers here\n")
    monkeypatch.chdir(tmp_path)  # no results/reference/ here either
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_each_scale_is_an_evidence_and_a_verdict_column(tmp_path):
    gpu = tmp_path / "gpu" / "table2"
    gpu.mkdir(parents=True)
    row = {"claim": "Table 2: DM-only beats MAR-only", "paper": "p", "ours": "FVD 1 vs 2", "test": "t",
           "verdict": "reproduced"}
    pd.DataFrame([row]).to_csv(gpu / CLAIMS_FILE, index=False)
    lines = render_table([*CPU, Scale("GPU", tmp_path / "gpu")]).splitlines()
    assert lines[0].endswith("| CPU verdict | GPU scale: ours (grid; test) | GPU verdict |")
    dm = next(line for line in lines if line.startswith("| Table 2: DM-only beats MAR-only |"))
    assert dm.endswith("| `table2`: FVD 1 vs 2; t | reproduced |")
    assert all(line.endswith("| not run | – |") for line in lines[2:] if line is not dm)


def test_the_gpu_grids_references_fill_the_gpu_column_only(tmp_path):
    """One reference folder holds both scales: gpu_* grids are the GPU column, the rest the CPU column; a
    GPU scale with no frozen grid yet reads "not run" instead of failing."""
    row = {"claim": "Table 2: DM-only beats MAR-only", "paper": "p", "ours": "FVD 1 vs 2", "test": "t",
           "verdict": "reproduced"}
    for grid, verdict in (("table2", "inconclusive (right direction)"), ("gpu_table2", "reproduced")):
        (tmp_path / grid).mkdir()
        pd.DataFrame([dict(row, verdict=verdict, ours=f"{grid} numbers")]).to_csv(tmp_path / grid / CLAIMS_FILE,
                                                                                  index=False)
    scales = [replace(scale, root=tmp_path) for scale in SCALES]
    line = render_table(scales).splitlines()[2]
    assert line == ("| Table 2: DM-only beats MAR-only | p | `table2`: table2 numbers; t | inconclusive (right direction) "
                    "| `gpu_table2`: gpu_table2 numbers; t | reproduced |")
    (tmp_path / "gpu_table2" / CLAIMS_FILE).unlink()
    assert render_table(scales).splitlines()[2].endswith("| inconclusive (right direction) | not run | – |")
    (tmp_path / "table2" / CLAIMS_FILE).unlink()
    with pytest.raises(ClaimsTableError, match="no \\*/claims.csv"):  # the CPU scale is not optional
        render_table(scales)


def test_each_gpu_claim_words_a_cpu_claim_so_the_scales_share_a_row():
    cpu = {c.claim for c in CLAIMS if not c.grid.startswith("gpu_")}
    gpu = [c for c in CLAIMS if c.grid.startswith("gpu_")]
    assert {c.grid for c in gpu} == {"gpu_table2", "gpu_fig6"} and all(c.claim in cpu for c in gpu)
