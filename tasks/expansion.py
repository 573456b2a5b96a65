"""Video expansion: the first k frames given, the rest generated; "masking half the frames" (§3)."""

from mardini_bench.registry import TASKS
from tasks.base import Task


@TASKS.register
def expansion(given: int = 0) -> Task:
    """`given` leading frames are references; 0 means half the clip (rounded down, at least 1)."""
    return Task("expansion", "the first half of the frames given; the rest generated",
                lambda n: tuple(range(max(1, min(n - 1, given or n // 2)))))
