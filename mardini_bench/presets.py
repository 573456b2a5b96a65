"""Named model presets: the paper's Table 1 and CPU-scale sizes (DiT `DiT_XL_2`-style one-liners).

Component-level factories say what they are (`planner_s`, `gen_288m`); model presets compose them.
`python -m mardini_bench.params PRESET` prints their parameter counts.
"""

from __future__ import annotations

from dataclasses import replace

from typing import Any, Dict

from mardini_bench.config import CodecConfig, DiffusionConfig, GeneratorConfig, ModelConfig, PlannerConfig
from mardini_bench.registry import MODEL_PRESETS, TRAIN_RECIPES

# Mean and std of pixel-codec latents on the default synthetic clips (2048 train clips, 9 x 32 x 32),
# measured by `python -m mardini_bench.data stats model=small`: the CPU presets standardise with
# them. On other data, run that command and pass its overrides (or model.codec.normalize=estimate).
SYNTHETIC_PIXEL_MEAN, SYNTHETIC_PIXEL_STD = 0.0743, 0.2196


# -- paper components (Table 1; heads are not in the paper: 128-d planner, 64-d generator heads) --
def planner_s() -> PlannerConfig:
    return PlannerConfig(depth=8, dim=4096, mlp_dim=4096, heads=32)


def planner_l() -> PlannerConfig:
    return PlannerConfig(depth=16, dim=4096, mlp_dim=8192, heads=32)


def gen_288m(attention: str = "spatiotemporal") -> GeneratorConfig:
    return GeneratorConfig(depth=8, dim=1024, mlp_dim=4096, heads=16, attention=attention)


def _paper(planner: PlannerConfig, attention: str) -> ModelConfig:
    # The paper's VAE has 16 latent channels at 8x compression (§2.1); patch size 1 (design §1.2).
    return ModelConfig(planner=planner, generator=gen_288m(attention), latent_channels=16)


@MODEL_PRESETS.register
def mardini_s_st() -> ModelConfig:
    return _paper(planner_s(), "spatiotemporal")


@MODEL_PRESETS.register
def mardini_l_st() -> ModelConfig:
    return _paper(planner_l(), "spatiotemporal")


@MODEL_PRESETS.register
def mardini_s_t() -> ModelConfig:
    return _paper(planner_s(), "temporal")


@MODEL_PRESETS.register
def mardini_l_t() -> ModelConfig:
    return _paper(planner_l(), "temporal")


# -- CPU scale: pixel codec, heavier planner at half resolution, lighter generator at full ----------
def pixel_codec(patch: int = 4) -> CodecConfig:
    return CodecConfig(name="pixel", patch=patch, shift=SYNTHETIC_PIXEL_MEAN, scale=1 / SYNTHETIC_PIXEL_STD)


def planner_tiny() -> PlannerConfig:
    return PlannerConfig(depth=2, dim=64, mlp_dim=128, heads=4, downsample=2)


# CPU generators read the references as input channels too (GeneratorConfig.ref_channels): at a
# minutes-long budget the paper's input alone never learns to find them through attention, and the
# model stays below copying the nearest frame (design §5; docs/results.md §6.1).
def gen_tiny() -> GeneratorConfig:
    return GeneratorConfig(depth=2, dim=48, mlp_dim=96, heads=4, ref_channels="neighbours")


def planner_small() -> PlannerConfig:
    return PlannerConfig(depth=4, dim=192, mlp_dim=384, heads=6, downsample=2)


def gen_small() -> GeneratorConfig:
    return GeneratorConfig(depth=3, dim=96, mlp_dim=192, heads=4, ref_channels="neighbours")


# CPU presets denoise the residual from linear blending (DiffusionConfig.prior): the background the
# references already show is then right from step one, instead of re-learnt by a minutes-long run.
# They sample with 2 DDIM steps. Models trained for minutes predict a good posterior mean but have not
# learnt to denoise at low noise, so every further step adds noise they cannot remove. The paper's 25
# (Fig. 6a) stays the default elsewhere; ablations/fig6a_ddim_steps.toml measures the curve (design §5;
# the numbers of both choices: docs/results.md §6.2-6.3).
def cpu_diffusion() -> DiffusionConfig:
    return DiffusionConfig(sample_steps=2, prior="blend")


# `small` samples with guidance on the planning signal (cfg 2) and outputs the mean of 8 samples. Its
# 2-step samples are posterior-mean estimates with a speckle that differs from draw to draw; the mean
# of 8 removes it (ablations/sampling.toml).
# It trains on 9 timesteps of the cosine schedule instead of 1000: the 2-step sampler reads only the
# first and the last level, and few levels put the training there. 9 is the fewest cosine levels that
# keep 40% of them above SNR 1 on the standardised latents (8 fall below it, and shifting 8 to meet it
# lost the gain). The grids measured before these changes run `small_v1`, which keeps the earlier
# sampling.
# Per task it guides image-to-video at 4 and expands with 3 DDIM steps, chosen on clips of the *test*
# split (the evaluation scores the val split). Expansion (half the clip generated after the given half)
# gains from the further steps where interpolation, with a reference on each side, loses; guidance helps
# most where the references say least. Interpolation keeps guidance 2: 3 gained within noise and cost
# SSIM. Why each choice: design §5; what each measured: docs/results.md §6.5-6.7.
def small_diffusion() -> DiffusionConfig:
    return replace(cpu_diffusion(), cfg_scale=2.0, sample_average=8, train_timesteps=9,
                   task_cfg_scale=(("image_to_video", 4.0),),
                   task_sample_steps=(("expansion", 3),))


@MODEL_PRESETS.register
def tiny() -> ModelConfig:
    """Tests and the quickstart: ~0.2M parameters, one training step in tens of ms on 2 cores."""
    return ModelConfig(planner=planner_tiny(), generator=gen_tiny(), diffusion=cpu_diffusion(), codec=pixel_codec(),
                       latent_channels=48)


@MODEL_PRESETS.register
def small() -> ModelConfig:
    """CPU ablations: a few M parameters, trains on 9-frame 32x32 clips in minutes on 2 cores."""
    return ModelConfig(planner=planner_small(), generator=gen_small(), diffusion=small_diffusion(), codec=pixel_codec(),
                       latent_channels=48)


@MODEL_PRESETS.register
def small_v1() -> ModelConfig:
    """`small` as the CPU ablation grids ran it: 1000 training timesteps, one sample, no guidance.

    Same architecture and recipe as `small`; only how it trains its noise levels and how it is sampled
    differ. Its resolved config is the one those grids hashed, so their run ids and frozen references
    stay valid while `small` moves on."""
    cfg = small()
    return replace(cfg, diffusion=replace(cfg.diffusion, cfg_scale=1.0, sample_average=1, train_timesteps=1000,
                                          task_cfg_scale=(), task_sample_steps=()))


@MODEL_PRESETS.register
def small_t() -> ModelConfig:
    """`small` with the /T generator (temporal-only attention)."""
    cfg = small()
    return replace(cfg, generator=replace(cfg.generator, attention="temporal"))


# -- one-GPU scale: the paper's method as the paper runs it, at widths one GPU trains in minutes -----
# The paper's Table 1 shrunk by 8 in width, its depths and shapes kept: a heavy planner (8 blocks,
# 128-d heads, MLP as wide as the block) at half resolution and a light generator (8 blocks, 64-d
# heads, MLP 4x) at full resolution. Nothing of the CPU presets' workarounds: no blend prior, no
# reference channels (references reach the generator as clean frames in its sequence, and the planning
# signal), 1000 training timesteps, 25 DDIM steps and one sample, guidance on the planning signal.
def planner_gpu() -> PlannerConfig:
    return PlannerConfig(depth=8, dim=512, mlp_dim=512, heads=4, downsample=2)


def gen_gpu() -> GeneratorConfig:
    return GeneratorConfig(depth=8, dim=192, mlp_dim=768, heads=3)


# Guidance per task as the paper samples: 2.5 for image-to-video, none for interpolation (§2.2, "redundant"
# with a reference on each side). The paper gives no scale for expansion; it extrapolates from given
# frames as image-to-video does, so it gets the same 2.5.
def paper_diffusion() -> DiffusionConfig:
    return DiffusionConfig(task_cfg_scale=(("image_to_video", 2.5), ("expansion", 2.5)))


@MODEL_PRESETS.register
def gpu() -> ModelConfig:
    """The faithful MarDini at one-GPU scale: 30M parameters (21M planner), 9-frame 32x32 clips."""
    return ModelConfig(planner=planner_gpu(), generator=gen_gpu(), diffusion=paper_diffusion(), codec=pixel_codec(),
                       latent_channels=48)


# -- training recipes: `model=NAME` applies NAME's recipe too (TRAIN_RECIPES), later train.* refine it --
def _paper_recipe() -> Dict[str, Any]:
    """Paper App. B (design §4.1): AdamW at 1.4e-4 for every stage, batch 1024 at 256² x 9 frames, ~73k
    joint steps (75M clips / 1024). The warm-up's length is not in the paper: 1000 steps is our choice."""
    return {"lr": 1.4e-4, "warmup_steps": 1000, "batch_size": 1024, "steps": 73_000}


for _name in ("mardini_s_st", "mardini_l_st", "mardini_s_t", "mardini_l_t"):
    TRAIN_RECIPES.register(_paper_recipe, name=_name)


@TRAIN_RECIPES.register(name="tiny")
def tiny_recipe() -> Dict[str, Any]:
    """0.2M parameters learn at 3e-3; 300 steps of batch 8 is the quickstart's budget."""
    return {"lr": 3e-3, "warmup_steps": 30, "batch_size": 8, "steps": 300}


@TRAIN_RECIPES.register(name="small")
def small_recipe() -> Dict[str, Any]:
    """A few M parameters learn fastest near 3e-3, far above the paper's 1.4e-4 (400-step probes); 1500
    steps of batch 8 train in about 15 minutes on 2 idle cores (docs/results.md §6.9)."""
    return {"lr": 3e-3, "warmup_steps": 100, "batch_size": 8, "steps": 1500}


@TRAIN_RECIPES.register(name="gpu")
def gpu_recipe() -> Dict[str, Any]:
    """Batch 64 for 5000 steps (320k clips: 10 passes over the gpu grids' 32768 training clips), AdamW at
    6e-4 after 250 warm-up steps. 44 GFLOP per clip makes a step 2.8 TFLOP: a few minutes of one GPU,
    so that 3 seeds of every claims grid fit in one GPU-hour. Compiled: eager, a step of these 16 small
    blocks waits on kernel launches, not on the GPU."""
    return {"lr": 6e-4, "warmup_steps": 250, "batch_size": 64, "steps": 5000, "compile": True}


TRAIN_RECIPES.register(small_recipe, name="small_t")
TRAIN_RECIPES.register(small_recipe, name="small_v1")


# Paper figures for the parameter test (Table 1).
PAPER_PARAMS = {
    "mardini_s_st": (1.3e9, 288e6),
    "mardini_l_st": (3.1e9, 288e6),
    "mardini_s_t": (1.3e9, 288e6),
    "mardini_l_t": (3.1e9, 288e6),
}
