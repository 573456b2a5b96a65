"""Video interpolation: first and last frames given, every frame between generated.

VIDIM-Bench's form is 9 frames (7 generated; the 5th frame is the middle one, paper Table 4); any count
of at least 3 frames works the same way.
"""

from mardini_bench.registry import TASKS
from tasks.base import Task


def first_and_last(n: int):
    return (0, n - 1)


@TASKS.register
def interpolation() -> Task:
    return Task("interpolation", "first and last frames given; the frames between are generated", first_and_last)
