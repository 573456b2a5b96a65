"""Image-to-video: one frame given. The paper masks "from the second frame onward" (§3); its demos
and Fig. 5 condition on the middle frame instead."""

from mardini_bench.registry import TASKS
from tasks.base import Task


@TASKS.register
def image_to_video() -> Task:
    return Task("image_to_video", "first frame given; every later frame is generated", lambda n: (0,))


@TASKS.register
def image_to_video_middle() -> Task:
    return Task("image_to_video_middle", "middle frame given; frames before and after are generated",
                lambda n: (n // 2,))
