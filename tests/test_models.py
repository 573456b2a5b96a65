"""MarDini model tests, parametrised over the registries themselves (timm `tests/test_models.py`)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mardini_bench.config import (ConfigError, DiffusionConfig, MaskConfig, ModelConfig, PRIOR_BASELINES, RunConfig,
                                  apply_overrides, rules_of)
from mardini_bench.factory import build_model
from mardini_bench.presets import PAPER_PARAMS
from mardini_bench.registry import (ATTENTIONS, BASELINES, CODECS, MASK_SCHEDULES, MODEL_PRESETS, NOISE_SCHEDULES,
                                    PLANNERS)
from models.attention import mixes_frames
from models.diffusion import ddim_sample
from models.mardini import prior_baseline
from models.masks import build_mask_schedule

FRAMES, SIZE = 8, 32


def tiny(*overrides: str) -> ModelConfig:
    """The tiny preset with `model.`-prefixed overrides applied (validated against the model only)."""
    return apply_overrides(MODEL_PRESETS.build("tiny"), [o.removeprefix("model.") for o in overrides])


def clip_batch(batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(batch, FRAMES, 3, SIZE, SIZE, generator=g)
    mask = torch.ones(batch, FRAMES, dtype=torch.bool)
    mask[:, 0] = mask[:, -1] = False  # interpolation
    return video, mask


def train_step_and_sample(model, mask=None, stage="joint", steps=5):
    """One forward/backward with a finite loss; every trainable parameter gets a finite gradient;
    then a few optimiser steps, after which every trainable gradient is non-zero; then DDIM."""
    video, default_mask = clip_batch()
    mask = default_mask if mask is None else mask
    model.set_stage(stage)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for i in range(steps):
        opt.zero_grad()
        loss = model.training_losses(video, mask, generator=torch.Generator().manual_seed(i))["loss"]
        assert torch.isfinite(loss), loss
        loss.backward()
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert trainable, "nothing to train"
        missing = [n for n, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"no/non-finite gradient: {missing}"
        opt.step()
    # Zero-initialised layers (final layer -> adaLN gates -> plan scale -> plan_proj) pass gradient
    # one link further per step, so non-zero gradients are checked after a few steps
    zero = [n for n, p in trainable.items() if p.grad.abs().sum() == 0]
    assert not zero, f"zero gradient after {steps} steps: {zero}"
    out = model.sample(video, mask, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == video.shape and torch.isfinite(out).all()
    assert torch.equal(out[~mask], video[~mask]), "reference frames must come back unchanged"
    return loss


# ----------------------------------------------------------------------------------------------
def test_paper_presets_match_table1_param_counts():
    for name, (planner, generator) in PAPER_PARAMS.items():
        counts = build_model(name, device="meta").num_params()
        assert abs(counts["planner"] / planner - 1) < 0.05, (name, counts)
        assert abs(counts["generator"] / generator - 1) < 0.05, (name, counts)


def test_meta_build_allocates_nothing():
    model = build_model("mardini_l_st", device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert model.planner is not None and model.generator is not None


@pytest.mark.parametrize("planner", PLANNERS.list())
def test_every_planner_variant_trains_and_samples(planner):
    # cfg_drop_prob 0.5 so that Z_uncond is used (and gets its gradient) within the batch
    model = build_model(tiny(f"model.planner.name={planner}", "model.generator.cfg_drop_prob=0.5"))
    train_step_and_sample(model)


@pytest.mark.parametrize("attention", ATTENTIONS.list())
def test_every_attention_type_trains_and_samples(attention):
    # A planner whose only cross-frame layer is spatial cannot carry reference frames to masked
    # ones (tested below), so frame-mixing types go in both networks and `spatial` in G only.
    planner_attention = attention if mixes_frames(attention) else "spatiotemporal"
    model = build_model(tiny(f"model.planner.attention={planner_attention}", f"model.generator.attention={attention}",
                             "model.generator.cfg_drop_prob=0.5"))
    train_step_and_sample(model)


def test_spatial_only_planner_cannot_see_reference_frames():
    model = build_model(tiny("model.planner.attention=spatial"))
    video, mask = clip_batch()
    model.latent_losses(model.encode(video), mask)["loss"].backward()
    assert model.planner.embed.weight.grad.abs().sum() == 0  # masked outputs never read the references


@pytest.mark.parametrize("schedule", NOISE_SCHEDULES.list())
def test_every_noise_schedule_trains_and_samples(schedule):
    model = build_model(tiny(f"model.diffusion.schedule={schedule}", "model.generator.cfg_drop_prob=0.5"))
    train_step_and_sample(model)


@pytest.mark.parametrize("name", MASK_SCHEDULES.list())
def test_every_mask_schedule_trains_and_samples(name):
    mask_cfg = apply_overrides(MaskConfig(), [f"name={name}"])
    mask = build_mask_schedule(mask_cfg)(4, FRAMES, step=0, generator=torch.Generator().manual_seed(1))
    train_step_and_sample(build_model(tiny("model.generator.cfg_drop_prob=0.5")), mask=mask)


@pytest.mark.parametrize("codec", CODECS.list())
def test_every_codec_trains_and_samples(codec, request):
    overrides = [f"model.codec.name={codec}", "model.generator.cfg_drop_prob=0.5"]
    if codec == "taef2":
        overrides.append(f"model.codec.weights={request.getfixturevalue('weights_dir')}")
    train_step_and_sample(build_model(tiny(*overrides)))


@pytest.mark.parametrize("stage", ["generator_warmup", "planner_warmup", "joint_task"])
def test_training_stages_train_their_networks(stage):
    model = build_model(tiny("model.generator.cfg_drop_prob=0.5"))
    train_step_and_sample(model, stage=stage)
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    expected = {"generator_warmup": {"generator"}, "planner_warmup": {"planner"}}.get(stage, {"planner", "generator"})
    assert trained == expected
    if stage == "planner_warmup":  # Eq. 2's projection head trains only here
        assert model.planner.recon_head.weight.requires_grad


def test_planner_reconstruction_joins_the_joint_loss_only_when_weighted():
    """planner.recon_weight adds Eq. 2 to the joint loss and trains P's projection head; at 0 (the paper)
    the joint loss is Eq. 3 alone and the head stays frozen."""
    video, mask = clip_batch()
    losses = {}
    for w in (0.0, 0.5):
        model = build_model(tiny(f"model.planner.recon_weight={w}"))
        model.set_stage("joint")
        assert model.planner.recon_head.weight.requires_grad == (w > 0)
        losses[w] = model.training_losses(video, mask, generator=torch.Generator().manual_seed(0))
    assert "recon_loss" not in losses[0.0]
    assert torch.equal(losses[0.0]["loss"], losses[0.0]["diffusion_loss"])
    aux = losses[0.5]
    assert aux["recon_loss"] > 0
    torch.testing.assert_close(aux["loss"].detach(), aux["diffusion_loss"] + 0.5 * aux["recon_loss"])
    train_step_and_sample(build_model(tiny("model.planner.recon_weight=0.5", "model.generator.cfg_drop_prob=0.5")))
    with pytest.raises(ConfigError, match="planner.recon_weight: got 0.5, needs a planner with planner.recon_head=true"):
        tiny("model.planner.recon_weight=0.5", "model.planner.recon_head=false")  # refused, not silently ignored


def test_mar_only_and_dm_only_ablations():
    mar_only = build_model(tiny("model.generator.name=none"))
    assert mar_only.generator is None
    train_step_and_sample(mar_only)
    dm_only = build_model(tiny("model.planner.name=none"))
    assert dm_only.planner is None
    train_step_and_sample(dm_only)
    with pytest.raises(ValueError, match="no model"):
        build_model(tiny("model.planner.name=none", "model.generator.name=none"))


def test_cfg_sampling_runs_two_branches_and_differs():
    model = build_model(tiny())
    video, mask = clip_batch(2)
    with torch.no_grad():  # make the planning signal matter
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    a = model.sample(video, mask, steps=2, cfg_scale=1.0, generator=torch.Generator().manual_seed(0))
    b = model.sample(video, mask, steps=2, cfg_scale=2.5, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, b)


def test_sample_average_is_the_mean_of_that_many_samples_drawn_in_turn():
    torch.manual_seed(0)
    model = build_model(tiny("model.diffusion.sample_average=3"))
    with torch.no_grad():  # leave adaLN-Zero's zero output so the samples differ
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    video, mask = clip_batch(2)
    z = model.encode(video)
    mean = model.sample_latents(z, mask, steps=2, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    draws = [model.sample_latents(z, mask, steps=2, generator=gen, sample_average=1) for _ in range(3)]
    assert not torch.allclose(draws[0], draws[1])
    torch.testing.assert_close(mean, sum(draws) / 3)


# -- Identity Attention (paper §2.3) --------------------------------------------------------------
def _perturbed_generator_outputs(identity: bool, attention: str, scope: str):
    model = build_model(tiny(f"model.generator.identity_attention={identity}",
                             f"model.generator.attention={attention}", f"model.generator.identity_scope={scope}"))
    with torch.no_grad():  # leave adaLN-Zero's identity start so attention actually matters
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    video, mask = clip_batch(2)
    z = model.encode(video)
    signal, hw, _, _ = model.plan(z, mask)
    t = torch.tensor([500, 500])
    z2 = z.clone()
    z2[:, 3] += torch.randn_like(z2[:, 3])  # change one noisy frame
    out1 = model.generator(z, t, signal, hw, mask)
    out2 = model.generator(z2, t, signal, hw, mask)
    return out1, out2, mask


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS.list() if mixes_frames(a)])
@pytest.mark.parametrize("scope", ["token", "frame"])
def test_generator_identity_attention_isolates_reference_frames(attention, scope):
    out1, out2, mask = _perturbed_generator_outputs(True, attention, scope)
    ref = ~mask
    assert torch.allclose(out1[ref], out2[ref], atol=1e-6), "reference outputs changed with Identity Attention on"
    assert not torch.allclose(out1[mask], out2[mask], atol=1e-4)
    off1, off2, _ = _perturbed_generator_outputs(False, attention, scope)
    assert (off1[ref] - off2[ref]).abs().max() > 1e-4, "with Identity Attention off, references should see noise"


def _perturbed_planner_outputs(identity: bool, attention: str, planner: str):
    model = build_model(tiny(f"model.planner.identity_attention={identity}", f"model.planner.attention={attention}",
                             f"model.planner.name={planner}"))
    video, mask = clip_batch(2)
    z_low = torch.nn.functional.avg_pool2d(model.encode(video).flatten(0, 1), 2).unflatten(0, (2, FRAMES))
    out1, _ = model.planner(z_low, mask)
    with torch.no_grad():  # the masked frames' input is the [MASK] token: change it
        model.planner.mask_token.add_(torch.randn_like(model.planner.mask_token))
    out2, _ = model.planner(z_low, mask)
    return out1, out2, mask


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS.list() if mixes_frames(a)])
@pytest.mark.parametrize("planner", ["mar", "mar_rope3d"])
def test_planner_identity_attention_isolates_reference_frames(attention, planner):
    out1, out2, mask = _perturbed_planner_outputs(True, attention, planner)
    ref = ~mask
    assert torch.allclose(out1[ref], out2[ref], atol=1e-6)
    off1, off2, _ = _perturbed_planner_outputs(False, attention, planner)
    assert (off1[ref] - off2[ref]).abs().max() > 1e-4


# -- learning ----------------------------------------------------------------------------------
def test_tiny_model_overfits_one_fixed_batch():
    """Fixed clips, mask, noise and timesteps: the loss must fall at least 10x in a few hundred steps."""
    torch.manual_seed(0)
    model = build_model(tiny("model.generator.cfg_drop_prob=0.0"))
    video, mask = clip_batch(2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = model.training_losses(video, mask, generator=torch.Generator().manual_seed(0))["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_ddim_with_an_oracle_velocity_recovers_x0_for_any_step_count():
    schedule = NOISE_SCHEDULES.build("cosine", timesteps=1000)
    x0 = torch.randn(3, 4, 5)
    for steps in (1, 2, 7, 25, 1000):
        def oracle(x_t, t):
            a, s = schedule.alpha_sigma(t, x_t)
            return (a * x_t - x0) / s  # the exact v for this x0
        out = ddim_sample(oracle, schedule, torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(steps)), steps)
        assert torch.allclose(out, x0, atol=1e-4), steps


def test_build_model_accepts_names_and_configs():
    assert build_model("tiny").cfg == build_model(tiny()).cfg
    run = RunConfig(model=tiny())
    assert dataclasses.asdict(build_model(run).cfg) == dataclasses.asdict(run.model)
    with pytest.raises(TypeError):
        build_model(42)


def test_conv_head_trains_and_starts_as_the_linear_head():
    model = build_model(tiny("model.generator.head=conv"))
    train_step_and_sample(model)
    fresh = build_model(tiny("model.generator.head=conv"))
    video, mask = clip_batch()
    z = fresh.encode(video)
    signal, hw, _, _ = fresh.plan(z, mask, fresh.encode_low(video))
    t = torch.full((video.shape[0],), 500)
    x_t = torch.where(mask[:, :, None, None, None], torch.randn_like(z), z)
    gen = fresh.generator
    with torch.no_grad():
        gen.final.linear.weight.normal_(std=0.1)  # a non-zero DiT projection, so the check can fail
        gen.head.conv1.weight.normal_(std=0.1)
        with_head = gen(x_t, t, signal, hw, mask)
        head, gen.head = gen.head, None
        without = gen(x_t, t, signal, hw, mask)
        assert torch.equal(with_head, without), "the zero-initialised conv head must start as the identity"
        gen.head = head
        head.conv2.weight.normal_(std=0.1)
        assert not torch.allclose(gen(x_t, t, signal, hw, mask), without)


def test_diffusion_prior_is_a_baselines_entry():
    """`diffusion.prior` names a training-free baseline; its config values (part of run ids) stay short."""
    assert rules_of(DiffusionConfig)["prior"]["choices"] == ("none", "nearest", "blend")
    for name, baseline in PRIOR_BASELINES.items():
        assert baseline in BASELINES
        assert build_model(tiny(f"model.diffusion.prior={name}")).prior_fn is BASELINES.get(baseline)
    assert build_model(tiny("model.diffusion.prior=none")).prior_fn is None  # the diffusion runs on the latent
    with pytest.raises(ConfigError, match="diffusion.prior: 'copy' is not one of none, nearest, blend"):
        prior_baseline("copy")
    with pytest.raises(ConfigError, match="prior: 'copy' is not one of none, nearest, blend"):
        tiny("model.diffusion.prior=copy")
