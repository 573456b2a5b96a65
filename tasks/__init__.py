"""Tasks: one module per task, each a `TASKS` registry entry (the mask decides the task)."""

from tasks import expansion, image_to_video, interpolation, looping  # noqa: F401  (registers tasks)
from tasks.base import PROTOCOLS, Task

__all__ = ["Task", "PROTOCOLS"]
