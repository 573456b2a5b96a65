"""Each task's masks against the paper's definitions (design §3.2, §6.1) for several frame counts, the
multi-task sampler, and the hierarchical long-generation schedule with a fake sampler."""

import pytest
import torch

from mardini_bench.registry import TASKS
from tasks import generate_long, multitask_train_mask, plan_long

FRAME_COUNTS = (5, 9, 12, 17, 32)


def given(task, n, **kw):
    return (~TASKS.build(task, **kw).eval_mask(n)).nonzero().flatten().tolist()


def test_registry_lists_the_tasks():
    assert set(TASKS.list()) >= {"interpolation", "image_to_video", "image_to_video_middle", "expansion", "looping"}


@pytest.mark.parametrize("n", FRAME_COUNTS)
def test_interpolation_gives_first_and_last(n):
    assert given("interpolation", n) == [0, n - 1]
    assert TASKS.build("interpolation").scored_frames(n, "all_frames") == list(range(1, n - 1))


def test_interpolation_vidim_bench_protocols():
    task = TASKS.build("interpolation")
    assert task.scored_frames(9, "middle_frame") == [4]  # "the middle (5th) frame"
    assert task.scored_frames(9, "all_frames") == [1, 2, 3, 4, 5, 6, 7]  # "all 7 frames"
    assert task.scored_frames(9, "whole_clip") == list(range(9))  # FVD: I3D needs all 9 frames
    with pytest.raises(ValueError, match="unknown protocol 'mid'; valid: all_frames, middle_frame, whole_clip"):
        task.scored_frames(9, "mid")
    with pytest.raises(ValueError, match="leaves no given or no generated frame"):
        task.eval_mask(2)


@pytest.mark.parametrize("n", FRAME_COUNTS)
def test_image_to_video_variants(n):
    assert given("image_to_video", n) == [0]  # "masking from the second frame onward"
    assert given("image_to_video_middle", n) == [n // 2]  # demos and Fig. 5: the middle frame
    assert TASKS.build("image_to_video").scored_frames(n, "all_frames") == list(range(1, n))


def test_image_to_video_middle_of_17_is_the_demo_layout():
    assert given("image_to_video_middle", 17) == [8]  # 8 before, 8 after: "16 further frames"


@pytest.mark.parametrize("n", FRAME_COUNTS)
def test_expansion_masks_half_by_default(n):
    assert given("expansion", n) == list(range(n // 2))
    assert TASKS.build("expansion").scored_frames(n, "all_frames") == list(range(n // 2, n))


def test_expansion_with_explicit_count():
    assert given("expansion", 17, given=5) == [0, 1, 2, 3, 4]  # demos: 5 given -> +12
    assert given("expansion", 28, given=16) == list(range(16))  # Fig. 8: 16 given -> next 12
    assert given("expansion", 4, given=9) == [0, 1, 2]  # clamped: one frame is always generated
    with pytest.raises(ValueError, match="given must be >= 0"):
        TASKS.build("expansion", given=-1)


@pytest.mark.parametrize("n", (5, 9, 17))
def test_looping_copies_first_frame_to_last(n):
    video = torch.rand(2, n, 3, 4, 4)
    task = TASKS.build("looping")
    out = task.prepare(video)
    assert torch.equal(out[:, -1], video[:, 0]) and torch.equal(out[:, :-1], video[:, :-1])
    assert not torch.equal(video[:, -1], video[:, 0])  # the input itself is left untouched
    assert given("looping", n) == [0, n - 1]
    assert torch.equal(task.prepare(video[0])[-1], video[0, 0])  # also on one (T, 3, H, W) clip
    assert TASKS.build("interpolation").prepare(video) is video


@pytest.mark.parametrize("task", ["interpolation", "image_to_video", "image_to_video_middle", "expansion", "looping"])
@pytest.mark.parametrize("n", (5, 9, 17))
def test_every_task_has_valid_masks_and_protocols(task, n):
    t = TASKS.build(task)
    mask = t.eval_mask(n)
    assert mask.shape == (n,) and mask.dtype == torch.bool and mask.any() and (~mask).any()
    assert t.scored_frames(n, "all_frames") == mask.nonzero().flatten().tolist()
    middle = t.scored_frames(n, "middle_frame")
    assert len(middle) == 1 and mask[middle[0]]
    train = t.train_mask(64, n, generator=torch.Generator().manual_seed(0))
    assert train.shape == (64, n) and train.dtype == torch.bool
    assert train.any(1).all() and (~train).any(1).all()  # every clip: a given and a generated frame
    again = t.train_mask(64, n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(train, again)


def test_fixed_tasks_train_on_their_eval_mask():
    for name in ("interpolation", "image_to_video", "image_to_video_middle", "looping"):
        t = TASKS.build(name)
        assert (t.train_mask(8, 9, generator=torch.Generator().manual_seed(1)) == t.eval_mask(9)).all()


def test_expansion_train_masks_are_prefixes_of_every_length():
    train = TASKS.build("expansion").train_mask(2000, 9, generator=torch.Generator().manual_seed(0), device="cpu")
    k = (~train).sum(1)
    assert torch.equal(train, torch.arange(9)[None] >= k[:, None])  # given frames are a prefix
    assert set(k.tolist()) == set(range(1, 9))  # k ~ U{1..T-1}
    assert 150 < (k == 1).sum() < 350


def test_multitask_mix_follows_weights_and_is_seeded():
    tasks = [TASKS.build("interpolation"), TASKS.build("image_to_video")]
    mask, which = multitask_train_mask(tasks, 4000, 9, generator=torch.Generator().manual_seed(0),
                                       weights=[3, 1])
    assert 0.72 < (which == 0).float().mean() < 0.78
    assert (mask[which == 0] == tasks[0].eval_mask(9)).all() and (mask[which == 1] == tasks[1].eval_mask(9)).all()
    again, _ = multitask_train_mask(tasks, 4000, 9, generator=torch.Generator().manual_seed(0), weights=[3, 1])
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="weights must be 2 non-negative numbers"):
        multitask_train_mask(tasks, 4, 9, weights=[1, -1])


# -- hierarchical long generation ------------------------------------------------------------------

def linear_fit_sampler(calls):
    """Fake model: fits a line through the given frames over the window index (extrapolates too)."""

    def sample(video, mask):
        calls.append((video.clone(), mask.clone()))
        B, K = mask.shape
        assert mask.dtype == torch.bool and mask.any(1).all() and (~mask).any(1).all()
        t = torch.arange(K, dtype=video.dtype)
        g = (~mask[0]).nonzero().flatten()
        if len(g) == 1:
            return video[:, g].expand_as(video).clone()
        tg, x = t[g], video[:, g]  # (G,), (B, G, ...)
        tc = tg - tg.mean()
        slope = (tc.view(1, -1, 1, 1, 1) * (x - x.mean(1, keepdim=True))).sum(1) / (tc ** 2).sum()
        return x.mean(1, keepdim=True) + slope[:, None] * (t - tg.mean()).view(1, -1, 1, 1, 1)

    return sample


@pytest.mark.parametrize("n_key,window,target", [(2, 9, 65), (1, 9, 40), (3, 5, 50), (4, 32, 128), (3, 9, 20)])
def test_generate_long_preserves_keyframes_and_recovers_linear_motion(n_key, window, target):
    plan = plan_long(n_key, window, target)
    g = torch.Generator().manual_seed(0)
    offset, slope = torch.rand(2, 1, 3, 4, 4, generator=g), torch.rand(2, 1, 3, 4, 4, generator=g) / target
    slope = slope if n_key > 1 else 0 * slope  # one key frame fixes no slope: the fake model holds it
    truth = offset + slope * torch.arange(target, dtype=torch.float).view(1, -1, 1, 1, 1)  # (2, T, 3, 4, 4)
    keys = truth[:, list(plan.keyframe_positions)].clone()
    calls = []
    out = generate_long(linear_fit_sampler(calls), keys, window, target)
    assert out.shape == (2, target, 3, 4, 4) and len(calls) == len(plan.steps)
    assert torch.equal(out[:, list(plan.keyframe_positions)], keys)  # given key frames come through as is
    torch.testing.assert_close(out, truth, atol=1e-4, rtol=0)  # every frame from the right windows
    for (video, mask), step in zip(calls, plan.steps):
        assert mask.shape == (2, window) and mask[0].tolist() == list(step.mask)
        assert (video[mask] == 0).all()  # masked inputs carry nothing the sampler could copy


def test_generate_long_never_overwrites_given_frames():
    keys = torch.rand(1, 3, 3, 2, 2)
    noisy = lambda video, mask: torch.rand_like(video)  # noqa: E731  a sampler that rewrites everything
    out = generate_long(noisy, keys, 9, 100)
    plan = plan_long(3, 9, 100)
    assert torch.equal(out[:, list(plan.keyframe_positions)], keys)


@pytest.mark.parametrize("n_key,window,target", [(2, 9, 65), (1, 9, 40), (3, 5, 50), (4, 32, 128), (5, 9, 11),
                                                 (2, 3, 17), (1, 17, 300)])
def test_plan_every_window_is_k_frames_with_known_givens_and_covers_the_target(n_key, window, target):
    plan = plan_long(n_key, window, target)
    known = set(plan.keyframe_positions)
    for step in plan.steps:
        assert len(step.positions) == len(step.mask) == window
        assert any(step.mask) and not all(step.mask)
        assert all(p in known for p, m in zip(step.positions, step.mask) if not m), "given frame not yet known"
        diffs = {b - a for a, b in zip(step.positions, step.positions[1:])}
        assert diffs == {step.stride}
        if step.kind == "interpolate":
            assert step.mask == tuple(TASKS.build("interpolation").eval_mask(window).tolist())
        else:
            k = step.mask.index(True)
            assert step.mask == tuple(TASKS.build("expansion", given=k).eval_mask(window).tolist())
        new = {p for p, m in zip(step.positions, step.mask) if m}
        assert not new & known, "a frame is generated twice"
        known |= new
    assert set(range(target)) <= known
    assert plan.steps[-1].stride == 1 or not plan.steps


def test_plan_levels_and_bad_arguments():
    assert plan_long(2, 9, 65).stride == 64  # two key frames 64 apart: two interpolation levels
    assert plan_long(2, 9, 64).stride == 8
    assert [s.kind for s in plan_long(2, 9, 65).steps] == ["interpolate"] * 9  # 1 window at stride 8, then 8
    with pytest.raises(ValueError, match="window must be >= 3"):
        plan_long(2, 2, 10)
    with pytest.raises(ValueError, match="span 17 frames, more than target_frames=10"):
        plan_long(3, 9, 10, levels=1)
    with pytest.raises(ValueError, match="expected"):
        generate_long(lambda v, m: v[:, :1], torch.rand(1, 2, 3, 2, 2), 5, 9)
