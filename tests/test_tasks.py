"""Each task's masks against the paper's definitions (§3.2 of the notes), for several frame counts."""

import pytest
import torch

from mardini_bench.registry import TASKS

FRAME_COUNTS = (2, 5, 9, 17)


def given(task: str, n: int):
    return (~TASKS.build(task).eval_mask(n)).nonzero().flatten().tolist()


@pytest.mark.parametrize("n", FRAME_COUNTS)
def test_interpolation_gives_first_and_last(n):
    assert given("interpolation", n) == [0, n - 1] if n > 2 else True
    if n == 9:  # VIDIM-Bench: 7 middle frames generated, the 5th frame is the middle one
        assert TASKS.build("interpolation").scored_frames(9, "middle_frame") == [4]
        assert TASKS.build("interpolation").scored_frames(9, "all_frames") == list(range(1, 8))


@pytest.mark.parametrize("n", FRAME_COUNTS)
def test_image_to_video_variants(n):
    assert given("image_to_video", n) == [0]  # "masking from the second frame onward"
    assert given("image_to_video_middle", n) == [n // 2]  # the demos' middle reference


@pytest.mark.parametrize("n", FRAME_COUNTS)
def test_expansion_masks_half(n):
    assert given("expansion", n) == list(range(max(1, n // 2)))
    assert given.__call__("expansion", n)[0] == 0


def test_expansion_with_explicit_count():
    assert (~TASKS.get("expansion")(given=5).eval_mask(17)).sum() == 5  # demos: 5 given -> +12


def test_looping_copies_first_frame_to_last():
    video = torch.rand(2, 9, 3, 4, 4)
    out = TASKS.build("looping").prepare(video)
    assert torch.equal(out[:, -1], video[:, 0]) and torch.equal(out[:, :-1], video[:, :-1])
    assert given("looping", 9) == [0, 8]


@pytest.mark.parametrize("task", TASKS.list())
@pytest.mark.parametrize("n", (5, 9, 17))
def test_every_task_has_a_given_and_a_generated_frame_and_valid_protocols(task, n):
    t = TASKS.build(task)
    mask = t.eval_mask(n)
    assert mask.any() and (~mask).any()
    assert set(t.scored_frames(n, "all_frames")) == set(mask.nonzero().flatten().tolist())
    assert len(t.scored_frames(n, "middle_frame")) == 1 and mask[t.scored_frames(n, "middle_frame")[0]]
    assert t.scored_frames(n, "whole_clip") == list(range(n))
    train = t.train_mask(4, n, generator=torch.Generator().manual_seed(0))
    assert train.shape == (4, n) and (train == mask).all()
    with pytest.raises(ValueError, match="unknown protocol"):
        t.scored_frames(n, "mid")
