"""Video interpolation: first and last frames given, the middle generated (VIDIM-Bench: 9 frames)."""

from mardini_bench.registry import TASKS
from tasks.base import Task


@TASKS.register
def interpolation() -> Task:
    return Task("interpolation", "first and last frames given; the middle frames are generated",
                lambda n: (0, n - 1))
