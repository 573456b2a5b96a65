"""Named model presets: the paper's Table 1 and CPU-scale sizes (DiT `DiT_XL_2`-style one-liners).

Component-level factories say what they are (`planner_s`, `gen_288m`); model presets compose them.
`python -m mardini_bench.params PRESET` prints their parameter counts.
"""

from __future__ import annotations

from dataclasses import replace

from mardini_bench.config import CodecConfig, GeneratorConfig, ModelConfig, PlannerConfig
from mardini_bench.registry import MODEL_PRESETS


# -- paper components (Table 1; heads are not in the paper: 128-d planner, 64-d generator heads) --
def planner_s() -> PlannerConfig:
    return PlannerConfig(depth=8, dim=4096, mlp_dim=4096, heads=32)


def planner_l() -> PlannerConfig:
    return PlannerConfig(depth=16, dim=4096, mlp_dim=8192, heads=32)


def gen_288m(attention: str = "spatiotemporal") -> GeneratorConfig:
    return GeneratorConfig(depth=8, dim=1024, mlp_dim=4096, heads=16, attention=attention)


def _paper(planner: PlannerConfig, attention: str) -> ModelConfig:
    # The paper's VAE has 16 latent channels at 8x compression (§2.1); patch size 1 (notes §1.2).
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
def planner_tiny() -> PlannerConfig:
    return PlannerConfig(depth=2, dim=64, mlp_dim=128, heads=4, downsample=2)


def gen_tiny() -> GeneratorConfig:
    return GeneratorConfig(depth=2, dim=48, mlp_dim=96, heads=4)


def planner_small() -> PlannerConfig:
    return PlannerConfig(depth=4, dim=192, mlp_dim=384, heads=6, downsample=2)


def gen_small() -> GeneratorConfig:
    return GeneratorConfig(depth=3, dim=96, mlp_dim=192, heads=4)


@MODEL_PRESETS.register
def tiny() -> ModelConfig:
    """Tests and the quickstart: ~0.2M parameters, one training step in tens of ms on 2 cores."""
    return ModelConfig(planner=planner_tiny(), generator=gen_tiny(), codec=CodecConfig(name="pixel", patch=4),
                       latent_channels=48)


@MODEL_PRESETS.register
def small() -> ModelConfig:
    """CPU ablations: a few M parameters, trains on 32x32x8 clips in minutes on 2 cores."""
    return ModelConfig(planner=planner_small(), generator=gen_small(), codec=CodecConfig(name="pixel", patch=4),
                       latent_channels=48)


@MODEL_PRESETS.register
def small_t() -> ModelConfig:
    """`small` with the /T generator (temporal-only attention)."""
    cfg = small()
    return replace(cfg, generator=replace(cfg.generator, attention="temporal"))


# Paper figures for the parameter test (Table 1).
PAPER_PARAMS = {
    "mardini_s_st": (1.3e9, 288e6),
    "mardini_l_st": (3.1e9, 288e6),
    "mardini_s_t": (1.3e9, 288e6),
    "mardini_l_t": (3.1e9, 288e6),
}
