"""Tasks: one module per task, each a `TASKS` registry entry (the mask decides the task)."""

from tasks import expansion, image_to_video, interpolation, looping  # noqa: F401  (registers tasks)
from tasks.base import PROTOCOLS, Task, multitask_train_mask
from tasks.hierarchical import Step, generate_long, plan_long

__all__ = ["Task", "PROTOCOLS", "multitask_train_mask", "Step", "plan_long", "generate_long"]
