"""What the toolkit knows about a metric, registered with it: `METRICS.register(name=..., meta=MetricInfo(...))`.

Evaluation, significance tests, tables, plots and the metrics CLI read a metric's direction, kind and
label from here, so a new metric is one registered builder (with its `MetricInfo`) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from mardini_bench.registry import METRICS, UnknownComponentError

KINDS = ("distribution", "paired")
FRAMES = ("clips", "frames")


@dataclass(frozen=True)
class MetricInfo:
    label: str  # column header: "FVD"
    higher_is_better: bool
    # "distribution": one number for a set of clips (FVD, FID) from network features, saved for the
    # bootstrap; "paired": a score of each generated clip against its real clip (PSNR, SSIM), per video
    kind: str
    # distribution metrics: "clips" scores whole videos (FVD); "frames" pools the task's scored frames
    # as images (FID). Paired metrics always score the task's scored frames.
    scores: str = "frames"
    decimals: int = 2  # digits in tables
    # The builder takes `weights=` (a file or folder) for a network that may be absent (LPIPS's
    # backbone): evaluation then skips the metric with one line instead of failing the run.
    optional_weights: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"MetricInfo.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.scores not in FRAMES:
            raise ValueError(f"MetricInfo.scores must be one of {', '.join(FRAMES)}, got {self.scores!r}")

    @property
    def whole_clips(self) -> bool:
        return self.kind == "distribution" and self.scores == "clips"


def metric_info(name: str) -> MetricInfo:
    """The registered `MetricInfo` of metric `name`; an unknown metric or one registered without its
    info is an error, never a guess (a guessed direction ranks a metric backwards)."""
    info = METRICS.meta(str(name))
    if info is None:
        raise UnknownComponentError(f"metric {name!r} was registered without a MetricInfo (meta=...): its "
                                    f"direction and kind are unknown")
    return info


def metric_names() -> List[str]:
    """Registered metrics in registration order (the tables' column order)."""
    return METRICS.in_order()


def is_distribution(name: str) -> bool:
    return metric_info(name).kind == "distribution"
