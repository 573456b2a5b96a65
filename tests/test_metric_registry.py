"""A metric is one registered builder with its MetricInfo: a toy one reaches every consumer untouched."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import pytest
import torch

from fake_runs import add_derived_metric, make_sweep
from mardini_bench.analysis import significance, sweep_report, tables
from mardini_bench.args import command_parser
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.factory import build_model
from mardini_bench.metrics import MetricInfo, MetricResult, metric_info
from mardini_bench.metrics.cli import COMMAND as METRICS_COMMAND
from mardini_bench.registry import METRICS, UnknownComponentError
from mardini_bench.run.evaluate import evaluate


class MeanAbsoluteError:
    """Toy paired metric: mean absolute pixel error of the scored frames (lower is better)."""

    def __init__(self, protocol: str = "all_frames") -> None:
        self.total, self.frames = 0.0, 0

    def update(self, real: torch.Tensor, fake: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        keep = mask if mask is not None else torch.ones(real.shape[:2], dtype=torch.bool)
        err = (real.float() - fake.float()).abs().mean((2, 3, 4))  # (B, T)
        self.total += float(err[keep].sum())
        self.frames += int(keep.sum())

    def compute(self) -> MetricResult:
        return MetricResult(self.total / self.frames, {"metric": "mae"})


@pytest.fixture
def toy_metric():
    METRICS.register(MeanAbsoluteError, name="mae", meta=MetricInfo("MAE", higher_is_better=False, kind="paired",
                                                                     decimals=3))
    yield "mae"
    METRICS.unregister("mae")


def test_a_registered_metric_is_evaluated_and_reported(toy_metric, tmp_path):
    # evaluation: scored per video for the model and the baselines
    cfg = apply_overrides(RunConfig(), ["model=tiny", "eval.metrics=[mae,psnr]", "eval.tasks=[interpolation]",
                                        "eval.num_videos=2", "eval.baselines=[copy_nearest]"])
    torch.manual_seed(0)
    records = evaluate(build_model(cfg), cfg, tmp_path / "sweep" / "run")
    mae = [r for r in records if r["metric"] == "mae"]
    assert {r["method"] for r in mae} == {"model", "copy_nearest"}
    assert all(len(r["per_video"]) == 2 and r["features"] is None for r in mae)

    # tables, significance and the report read its label and direction from the registry
    sweep = make_sweep(tmp_path / "toy", [({"model.planner.depth": 2}, 0.6), ({"model.planner.depth": 4}, 0.9)],
                       seeds=(0, 1))
    for result_file in sweep.glob("*/result.json"):  # MAE that falls as PSNR rises: the better variant wins both
        add_derived_metric(result_file, "psnr", "mae", lambda v: 1.0 / v)
    assert sweep_report.main([str(sweep), "--n-boot", "50"]) == 0
    table = (sweep / "table.md").read_text()
    header = next(line for line in table.splitlines() if "MAE" in line)
    assert header.index("SSIM") < header.index("MAE")  # registration order: after the built-in metrics
    comparisons = pd.read_csv(sweep / "significance.csv")
    assert set(comparisons[comparisons["metric"] == "mae"]["task"]) == {"interpolation", "image_to_video"}
    assert significance.lower_is_better("mae") and tables.number(0.12345, "mae") == "0.123"
    assert significance.worse(0.5, 0.4, "mae") and not significance.worse(0.3, 0.4, "mae")

    # the metrics CLI offers it
    assert command_parser(METRICS_COMMAND, "metrics").parse_args(["mae", "a", "b"]).metric == "mae"


def test_a_metric_without_its_info_is_an_error_not_a_guess(toy_metric):
    METRICS.register(MeanAbsoluteError, name="mystery")
    try:
        with pytest.raises(UnknownComponentError, match="'mystery' was registered without a MetricInfo"):
            significance.lower_is_better("mystery")
    finally:
        METRICS.unregister("mystery")
    with pytest.raises(UnknownComponentError, match="unknown metric .vmaf."):
        metric_info("vmaf")
