"""`MetricResult`: a value that carries the protocol it was measured under."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple


@dataclass(frozen=True)
class MetricResult:
    """One metric value, its full protocol and, when asked for, a bootstrap interval.

    Two values are comparable only when their protocols agree on everything but the counts;
    aggregation refuses to mix them."""

    value: float
    protocol: Dict[str, Any] = field(default_factory=dict)
    ci: Optional[Tuple[float, float]] = None  # (low, high) percentile bootstrap interval

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: {"value", "protocol", "ci"}."""
        return {"value": self.value, "protocol": dict(self.protocol),
                "ci": None if self.ci is None else list(self.ci)}
