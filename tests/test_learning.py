"""The fixes that make models learn: standardised latents, a schedule with enough low-noise timesteps,
training masks that cover the evaluated tasks, the planner's antialiased low-resolution input,
synthetic motion that the trivial baselines get wrong, and presets that carry their training recipe."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mardini_bench.config import (ConfigError, DataConfig, MaskConfig, RunConfig, apply_overrides, task_sampling,
                                  training_dict)
from mardini_bench.data import build_dataset, latent_stats
from mardini_bench.factory import build_model
from mardini_bench.registry import TASKS
from models.baselines import copy_nearest, linear_blend
from mardini_bench.run.evaluate import model_sampler
from mardini_bench.run.train import train
from models.diffusion import cosine, shifted
from models.masks import build_mask_schedule


def clips(n: int, split: str = "train", **data) -> torch.Tensor:
    ds = build_dataset(DataConfig(**data), split)
    return torch.stack([ds[i] for i in range(n)])


# -- latent normalisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_preset_latents_are_standardised_on_training_clips(preset):
    model = build_model(preset)
    z = model.encode(clips(256))
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05, (z.mean(), z.std())
    raw = model.codec.encode(clips(4))  # without normalisation the signal is ~5x below the noise
    assert raw.std() < 0.3


def test_latent_stats_match_the_preset_constants_and_normalize_estimate_sets_them(tmp_path, one_thread):
    from mardini_bench.presets import SYNTHETIC_PIXEL_MEAN, SYNTHETIC_PIXEL_STD

    mean, std = latent_stats(build_model("tiny").codec, build_dataset(DataConfig(), "train"), 2048)
    assert mean == pytest.approx(SYNTHETIC_PIXEL_MEAN, abs=5e-4) and std == pytest.approx(SYNTHETIC_PIXEL_STD, abs=5e-4)
    cfg = apply_overrides(RunConfig(), ["model=tiny", "model.codec.normalize=estimate", "model.codec.shift=0",
                                        "model.codec.scale=1", "model.codec.stats_clips=64", "train.steps=2",
                                        "data.motion=drift", "train.checkpoint_every=1"])
    result = train(cfg, tmp_path)
    drift_mean, drift_std = latent_stats(result.model.codec, build_dataset(cfg.data, "train"), 64)
    assert result.summary["latent_shift"] == pytest.approx(drift_mean, rel=1e-5)
    assert result.summary["latent_scale"] == pytest.approx(1 / drift_std, rel=1e-5)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    assert saved["latent_scale"].item() == pytest.approx(1 / drift_std, rel=1e-5)  # resumes and evaluates with them


# -- noise schedule -----------------------------------------------------------------------------------
def test_default_schedule_puts_enough_timesteps_above_snr_one_at_32px():
    model = build_model("small")
    data_var = model.encode(clips(128)).var().item()
    snr = model.schedule.snr() * data_var  # SNR of the actual (standardised) training latents
    assert (snr > 1).float().mean().item() >= 0.4
    # the same schedule on raw pixel latents (the old default) had only ~13% above SNR 1
    raw_var = build_model("small").codec.encode(clips(128)).var().item()
    assert (cosine().snr() * raw_var > 1).float().mean().item() < 0.2


def test_shifted_schedule_divides_snr_by_shift_squared():
    base = cosine()
    low = shifted(base, 0.5)
    mid = slice(100, 900)
    assert torch.allclose(low.snr()[mid], base.snr()[mid] * 4, rtol=1e-6)
    assert (low.snr() > 1).float().mean() > (base.snr() > 1).float().mean()
    assert shifted(base, 1.0) is base
    with pytest.raises(ValueError, match="shift must be > 0"):
        shifted(base, 0)


# -- training masks -----------------------------------------------------------------------------------
def test_default_training_masks_are_the_evaluated_tasks_masks():
    cfg = RunConfig()
    assert cfg.mask.name == "tasks" and cfg.mask.tasks == ()  # () = the run's eval.tasks
    fn = build_mask_schedule(dataclasses.replace(cfg.mask, tasks=cfg.eval.tasks))
    masks = fn(3000, 9, generator=torch.Generator().manual_seed(0))
    interp = TASKS.build("interpolation").eval_mask(9)
    i2v = TASKS.build("image_to_video").eval_mask(9)
    share = lambda m: (masks == m).all(1).float().mean().item()  # noqa: E731
    assert 0.28 < share(interp) < 0.39 and 0.28 < share(i2v) < 0.39  # about a third each
    weighted = build_mask_schedule(MaskConfig(name="tasks", tasks=("interpolation", "image_to_video"),
                                              task_weights=(3.0, 1.0)))
    masks = weighted(4000, 9, generator=torch.Generator().manual_seed(1))
    assert 0.72 < share(interp) < 0.78


def test_uniform_masks_rarely_hit_the_interpolation_mask():
    # why the default changed: random reference positions almost never give first + last only
    fn = build_mask_schedule(MaskConfig(name="uniform"))
    masks = fn(20000, 9, generator=torch.Generator().manual_seed(0))
    interp = TASKS.build("interpolation").eval_mask(9)
    assert (masks == interp).all(1).float().mean().item() < 0.02


# -- the planner's input ------------------------------------------------------------------------------
def test_planner_sees_latents_of_antialiased_low_resolution_frames():
    video = clips(2)
    model = build_model("tiny")
    low = F.interpolate(video.flatten(0, 1), size=(16, 16), mode="bilinear", antialias=True).unflatten(0, (2, 9))
    assert torch.allclose(model.encode_low(video), model.encode(low), atol=1e-6)
    pooled = build_model(apply_overrides(RunConfig(), ["model=tiny", "model.planner.input=pooled"]))
    assert pooled.encode_low(video) is None
    mask = TASKS.build("interpolation").eval_mask(9).expand(2, 9)
    z = model.encode(video)
    assert model.plan(z, mask, model.encode_low(video))[0].shape == pooled.plan(z, mask)[0].shape
    # a proper downsample keeps what the generator's grid can use: upsampled back, it is closer to the
    # frames than the aliased pooled latent (2x2 average of 4x4-pixel patch latents)
    up = F.interpolate(low.flatten(0, 1), size=(32, 32), mode="bilinear").unflatten(0, (2, 9))
    pooled_up = pooled.lift(F.avg_pool2d(z.flatten(0, 1), 2).unflatten(0, (2, 9)), (8, 8))
    assert F.mse_loss(up, video) < F.mse_loss(pooled.decode(pooled_up), video)


# -- residual diffusion -------------------------------------------------------------------------------
@pytest.mark.parametrize("prior, baseline", [("blend", linear_blend), ("nearest", copy_nearest)])
def test_residual_prior_untrained_model_samples_its_baseline(prior, baseline):
    video = clips(3, split="val")
    mask = TASKS.build("interpolation").eval_mask(9).expand(3, 9).clone()
    model = build_model(apply_overrides(RunConfig(), ["model=tiny", f"model.diffusion.prior={prior}"]))
    frames = build_model(apply_overrides(RunConfig(), ["model=tiny", "model.diffusion.prior=none"]))
    z = model.encode(video)
    guess = model.prior(z, mask)
    assert torch.equal(guess[:, 0], z[:, 0]) and torch.equal(guess[:, -1], z[:, -1])  # references: no residual
    # the generator's output layer starts at zero, so v = 0: one DDIM step from pure noise predicts the
    # residual x0 = alpha_T x_T ~ 0, and the sample is the guess, i.e. the baseline's own frames
    sample = model.sample(video, mask, steps=1, generator=torch.Generator().manual_seed(0))
    assert (sample - baseline(video, mask)).abs().max() < 0.01
    plain = frames.sample(video, mask, steps=1, generator=torch.Generator().manual_seed(0))
    assert (plain - baseline(video, mask)).abs().max() > 0.1  # without a prior it is not the baseline
    # training targets the residual: the loss of a zero-velocity model is E||alpha eps - sigma x0||^2
    # with x0 the residual, which is smaller than with x0 the frame when the guess is good
    losses = [m.training_losses(video, mask, torch.Generator().manual_seed(1))["loss"].item()
              for m in (model, frames)]
    assert losses[0] < losses[1]


# -- data ---------------------------------------------------------------------------------------------
def test_default_motion_makes_the_trivial_baselines_clearly_wrong():
    def baseline_psnr(**data):
        video = clips(48, "val", **data)
        mask = TASKS.build("interpolation").eval_mask(9).expand(len(video), 9)
        out = {}
        for fn in (copy_nearest, linear_blend):
            mse = ((fn(video, mask) - video) ** 2)[mask].mean(dim=(1, 2, 3))
            out[fn.__name__] = (10 * torch.log10(1 / mse)).mean().item()
        return out

    new, old = baseline_psnr(), baseline_psnr(motion="drift")
    assert new["copy_nearest"] < old["copy_nearest"] - 1 and new["linear_blend"] < old["linear_blend"] - 1


def test_drift_motion_renders_the_first_version_of_the_clips():
    from mardini_bench.data.synthetic import render_clip

    ds = build_dataset(DataConfig(motion="drift"), "val")
    assert torch.equal(ds[5], render_clip((0, 1, 5), 9, 32, 1.0, 0.5, "drift"))
    assert not torch.equal(ds[5], build_dataset(DataConfig(), "val")[5])
    with pytest.raises(ValueError, match="data.motion"):
        render_clip(0, 9, 32, motion="teleport")


# -- presets carry their training recipe --------------------------------------------------------------
def test_model_preset_brings_its_training_recipe_and_later_keys_refine_it():
    small = apply_overrides(RunConfig(), ["model=small"])
    assert (small.train.lr, small.train.batch_size) == (3e-3, 8) and small.train.steps > 1000
    assert apply_overrides(RunConfig(), ["model=small", "train.lr=5e-4"]).train.lr == 5e-4
    paper = apply_overrides(RunConfig(), ["model=mardini_s_st"])
    assert paper.train.lr == 1.4e-4 and paper.train.batch_size == 1024
    assert apply_overrides(RunConfig(), ["model=tiny"]).train.lr != paper.train.lr


# -- sampling per task ---------------------------------------------------------------------------------
def test_task_sampling_replaces_steps_and_guidance_for_the_named_task_only():
    cfg = apply_overrides(RunConfig(), ["model=tiny", 'model.diffusion.task_sample_steps=[["expansion",4]]',
                                        'model.diffusion.task_cfg_scale=[["interpolation",3.0]]'])
    d = cfg.model.diffusion
    assert task_sampling(d, "expansion") == {"steps": 4, "cfg_scale": d.cfg_scale}
    assert task_sampling(d, "interpolation") == {"steps": d.sample_steps, "cfg_scale": 3.0}
    assert task_sampling(d, None) == task_sampling(d, "image_to_video") == {"steps": d.sample_steps,
                                                                             "cfg_scale": d.cfg_scale}
    # how the model is sampled, not what it learns: a run differing only here reuses a sibling's training
    assert training_dict(cfg) == training_dict(apply_overrides(RunConfig(), ["model=tiny"]))


def test_the_val_split_size_decides_what_is_scored_not_what_is_trained():
    small, large = (apply_overrides(RunConfig(), ["model=tiny", f"data.num_eval={n}"]) for n in (8, 256))
    assert training_dict(small) == training_dict(large)  # a larger val split re-scores the same weights
    for i in (0, 7):  # because the train split's clips do not depend on it ...
        assert torch.equal(build_dataset(small.data, "train")[i], build_dataset(large.data, "train")[i])
        assert torch.equal(build_dataset(small.data, "val")[i], build_dataset(large.data, "val")[i])
    assert training_dict(small) != training_dict(apply_overrides(small, ["data.num_train=512"]))  # ... unlike this


def test_evaluation_samples_each_task_with_its_own_settings():
    cfg = apply_overrides(RunConfig(), ["model=tiny", 'model.diffusion.task_sample_steps=[["expansion",3]]'])
    model = build_model(cfg.model)
    video = torch.rand(2, cfg.data.frames, 3, cfg.data.resolution, cfg.data.resolution)
    mask = TASKS.build("expansion").eval_mask(cfg.data.frames).expand(2, -1)
    seen = []
    model.sample = lambda video, mask, **kw: seen.append(kw) or video
    model_sampler(model, 0, "expansion")(video, mask)
    model_sampler(model, 0, "interpolation")(video, mask)
    assert [kw["steps"] for kw in seen] == [3, cfg.model.diffusion.sample_steps]


@pytest.mark.parametrize("override, expected", [
    ('model.diffusion.task_sample_steps=[["expansoin",4]]', "did you mean 'expansion'"),
    ('model.diffusion.task_sample_steps=[["expansion",0]]', "task_sample_steps[0] (expansion): got 0, must be >= 1"),
    ('model.diffusion.task_cfg_scale=[["expansion",1],["expansion",2]]', "expansion named more than once"),
])
def test_task_sampling_refuses_unknown_tasks_bad_values_and_repeats_in_one_line(override, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), ["model=tiny", override])
    assert expected in str(err.value) and "\n" not in str(err.value)
