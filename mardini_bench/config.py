"""Frozen dataclass configs, nested into one `RunConfig`, with typed dotted overrides.

Every field says why it exists, and carries its rules (`setting`): the registry its value names, its
choices or range, how it enters the run id, whether it is read only after training. `validate()`, the
run id and the training key read them there, and each class lists its rules between fields in
`checks`; so adding a setting is one line here and its use in the code.

Overrides follow nanoGPT's configurator semantics without its `exec`::

    cfg = apply_overrides(RunConfig(), ["model=small", "model.planner.depth=4", "train.lr=3e-4"])

`model=NAME` swaps in a whole preset (a `MODEL_PRESETS` entry) and its training recipe (a
`TRAIN_RECIPES` entry of the same name, when there is one); later keys refine both. Values are
parsed against the field's annotated type; unknown keys are rejected with the valid ones listed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from mardini_bench.registry import MODEL_PRESETS, REGISTRIES, TRAIN_RECIPES, UnknownComponentError


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and what would be valid."""


# ----------------------------------------------------------------------------------------------
# A field and its rules
# ----------------------------------------------------------------------------------------------
# A range is (test, what is valid). NaN fails every comparison, so it is out of every range.
Range = Tuple[Callable[[Any], bool], str]
AT_LEAST_1: Range = (lambda v: v >= 1, ">= 1")
AT_LEAST_2: Range = (lambda v: v >= 2, ">= 2")
AT_LEAST_0: Range = (lambda v: v >= 0, ">= 0")
POSITIVE: Range = (lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
NON_NEGATIVE: Range = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
FINITE: Range = (math.isfinite, "a finite number")
UNIT: Range = (lambda v: 0 <= v <= 1, "in [0, 1]")
UNIT_OPEN: Range = (lambda v: 0 <= v < 1, "in [0, 1)")
# Seeds: the 32-bit range every generator a run seeds takes (numpy's SeedSequence refuses negatives), and
# small enough that evaluation's per-task seed, seed * 1000003 + crc32(task), fits torch's 64-bit seed.
SEED: Range = (lambda v: 0 <= v <= 2 ** 32 - 1, f"a whole number in [0, {2 ** 32 - 1}]")

# How a field enters the run id (`identity_dict`):
#   "always"      hashed whatever its value: every field of the schema the published runs were named by
#   "if_changed"  hashed only when it differs from its default: every field added since, so a new
#                 option never renames an existing run (its default is the behaviour those runs had)
#   "never"       how a run executes, not what it computes (fsdp follows ddp's curve; checkpointing
#                 recomputes bit for bit): a run resumed or repeated with another value is the same run
RUN_ID_POLICIES = ("always", "if_changed", "never")


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
            registry: Optional[str] = None, choices: Optional[Tuple[str, ...]] = None,
            valid: Optional[Range] = None, run_id: str = "always", after_training: bool = False) -> Any:
    """A config field with its rules, where `validate`, the run id and the training key read them:

    registry        the value (or each element of a tuple) names an entry of that registry
    choices         the value is one of these strings
    valid           a Range every numeric value (each element of a tuple) must satisfy; None passes
    run_id          "always", "if_changed" or "never" (RUN_ID_POLICIES)
    after_training  read only once the weights are trained (how a model is sampled, how many val clips
                    there are to score): runs differing in nothing else train the same weights
    """
    if run_id not in RUN_ID_POLICIES:
        raise ValueError(f"run_id={run_id!r}; valid: {', '.join(RUN_ID_POLICIES)}")
    rules = {"registry": registry, "choices": choices, "valid": valid, "run_id": run_id,
             "after_training": after_training}
    return field(default=default, default_factory=factory, metadata={k: v for k, v in rules.items() if v})


# Training stages (paper Fig. 4), in curriculum order: `train.stage`, `train.schedule`, `MarDini.set_stage`.
STAGES = ("generator_warmup", "planner_warmup", "joint", "joint_task")

# DiffusionConfig.prior -> the BASELINES entry that makes the guess. The short names are what configs
# have always said, and configs are hashed into run ids, so they stay; a new prior is a new entry here.
PRIOR_BASELINES: Dict[str, str] = {"nearest": "copy_nearest", "blend": "linear_blend"}

FOLDER_DATASETS = ("video_folder", "frame_folder")

# data.fps of synthetic clips: their motion per frame is the nominal 8 fps motion x 8 / fps. At 1 fps the
# fastest sprite (0.12 frame widths per frame at 8 fps) moves about a whole frame width between frames,
# and below it the clip no longer shows one motion (at 1e-300 the positions overflow to NaN). At 240 fps,
# the fastest slow-motion cameras, the motion is 1/30 of the nominal; far above it every frame rounds to
# the same picture (copying scores a perfect, infinite PSNR).
SYNTHETIC_FPS = (1.0, 240.0)

# The tasks a run evaluates (and trains on, with mask.name=tasks) unless it names others.
DEFAULT_TASKS = ("interpolation", "image_to_video", "expansion")

# RoPE base frequency (Su et al. 2021, as in Llama): the planner's `rope_theta` default and the base the
# generator always uses. The generator has no field for it on purpose: a new field would change every
# config hash, and so every run id. Here rather than in models/attention.py so configs stay torch-free.
ROPE_THETA = 10000.0


# ----------------------------------------------------------------------------------------------
# Rules between fields: each class lists its own in `checks`, run by `validate`
# ----------------------------------------------------------------------------------------------
def _check_heads(cfg: Any, prefix: str) -> None:
    """Attention splits `dim` into `heads` heads; RoPE rotates pairs, so a head needs an even width."""
    if cfg.dim % cfg.heads == 0 and (cfg.dim // cfg.heads) % 2 == 0:
        return
    valid = [h for h in range(1, cfg.dim + 1) if cfg.dim % h == 0 and (cfg.dim // h) % 2 == 0]
    raise ConfigError(f"{prefix}heads: {cfg.heads} does not split {prefix}dim={cfg.dim} into heads of even "
                      f"width; valid: {', '.join(map(str, valid[:12])) or 'none (make dim even)'}")


def _check_recon(cfg: "PlannerConfig", prefix: str) -> None:
    """Eq. 2 in the joint loss needs the projection head that reconstructs frames; never ignore it silently."""
    if cfg.recon_weight > 0 and (not cfg.recon_head or cfg.name == "none"):
        raise ConfigError(f"{prefix}recon_weight: got {cfg.recon_weight:g}, needs a planner with "
                          f"{prefix}recon_head=true (got name={cfg.name}, recon_head={cfg.recon_head}); "
                          f"valid: 0 or enable the head")


def _check_refs(cfg: "MaskConfig", prefix: str) -> None:
    if cfg.max_ref < cfg.min_ref:
        raise ConfigError(f"{prefix}max_ref: got {cfg.max_ref}, must be >= {prefix}min_ref={cfg.min_ref}")
    for i, (until, low, high) in enumerate(cfg.stages):
        if not (until >= 0 and 0 <= low <= high <= 1):
            raise ConfigError(f"{prefix}stages[{i}]: got {[until, low, high]}, must be "
                              "[until_step >= 0, min_ref_frac, max_ref_frac] with 0 <= min <= max <= 1")


def _check_task_sampling(cfg: "DiffusionConfig", prefix: str) -> None:
    """Per-task sampling names registered tasks, once each, with values in the plain fields' ranges."""
    tasks = REGISTRIES["task"]
    for key, plain in (("task_sample_steps", "sample_steps"), ("task_cfg_scale", "cfg_scale")):
        pairs, rule = getattr(cfg, key), rules_of(type(cfg))[plain]["valid"]
        for i, (task, value) in enumerate(pairs):
            if task not in tasks:
                raise ConfigError(f"{prefix}{key}[{i}]: {tasks.unknown_message(task)}")
            _check_range(f"{prefix}{key}[{i}] ({task})", value, rule)
        names = [task for task, _ in pairs]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"{prefix}{key}: {', '.join(twice)} named more than once; give each task one value")


def _check_sample_steps(cfg: "DiffusionConfig", prefix: str) -> None:
    """DDIM samples a subset of the training timesteps: asked for more, it would run fewer steps than the
    config (and result.json) records."""
    asked = [("sample_steps", cfg.sample_steps)] + [(f"task_sample_steps ({task})", steps)
                                                    for task, steps in cfg.task_sample_steps]
    for key, steps in asked:
        if steps > cfg.train_timesteps:
            raise ConfigError(f"{prefix}{key}: got {steps}, must be <= {prefix}train_timesteps={cfg.train_timesteps} "
                              f"(DDIM samples a subset of the training timesteps)")


def _check_model_parts(cfg: "ModelConfig", prefix: str) -> None:
    """Something must predict frames: the generator, or (MAR-only) the planner's reconstruction head."""
    if cfg.planner.name == "none" and cfg.generator.name == "none":
        raise ConfigError(f"{prefix}planner.name=none and {prefix}generator.name=none leave no model to train; "
                          f"keep at least one")
    if cfg.generator.name == "none" and (cfg.planner.name == "none" or not cfg.planner.recon_head):
        raise ConfigError(f"{prefix}generator.name=none (MAR-only) predicts frames with the planner's head: set "
                          f"{prefix}planner.recon_head=true (got {cfg.planner.recon_head})")


def _check_root(cfg: "DataConfig", prefix: str) -> None:
    """A folder dataset without a folder would fail only once a job starts (after its wait in a queue)."""
    if cfg.dataset in FOLDER_DATASETS and not cfg.root:
        raise ConfigError(f"{prefix}root: {prefix}dataset={cfg.dataset} reads clips from a folder; "
                          f"set {prefix}root=PATH (or {prefix}dataset=synthetic for the built-in clips)")


def _check_fps(cfg: "DataConfig", prefix: str) -> None:
    low, high = SYNTHETIC_FPS
    if cfg.dataset == "synthetic" and cfg.fps is not None and not low <= cfg.fps <= high:
        raise ConfigError(f"{prefix}fps: got {cfg.fps:g}, must be in [{low:g}, {high:g}] for synthetic clips (or none "
                          f"for the nominal 8 fps): outside it their motion per frame is no longer one motion, "
                          f"or none at all")


def _check_micro_batch(cfg: "TrainConfig", prefix: str) -> None:
    """A fixed micro-batch must split the global batch (and, at run time, each process's share of it)."""
    if cfg.micro_batch and cfg.batch_size % cfg.micro_batch:
        valid = [m for m in range(1, cfg.batch_size + 1) if cfg.batch_size % m == 0]
        raise ConfigError(f"{prefix}micro_batch: got {cfg.micro_batch}, must divide {prefix}batch_size="
                          f"{cfg.batch_size}; valid: 0 (the per-process share) or {', '.join(map(str, valid[:12]))}")


def _check_schedule(cfg: "TrainConfig", prefix: str) -> None:
    """Fig. 4 curriculum: known stages, positive lengths, no more steps than the run has."""
    for i, (stage, steps) in enumerate(cfg.schedule):
        if stage not in STAGES:
            raise ConfigError(f"{prefix}schedule: unknown stage {stage!r}; valid: {', '.join(STAGES)}")
        if steps < 1:
            raise ConfigError(f"{prefix}schedule[{i}]: stage {stage!r} has {steps} steps, must be >= 1")
    covered = sum(steps for _, steps in cfg.schedule)
    if covered > cfg.steps:
        raise ConfigError(f"{prefix}schedule covers {covered} steps but {prefix}steps is {cfg.steps}")


def _check_evaluation(cfg: "EvalConfig", prefix: str) -> None:
    """A run scores at least one task on at least one metric: an empty list would finish DONE with no
    scores. (Repeats are refused with the names, by `validate`.)"""
    for key, kind in (("tasks", "task"), ("metrics", "metric")):
        if not getattr(cfg, key):
            raise ConfigError(f"{prefix}{key}: empty; a run scores at least one {kind}; valid: "
                              f"{', '.join(REGISTRIES[kind].list())}")


def latent_geometry(cfg: "CodecConfig") -> tuple:
    """(channels, factor) of a codec without loading its weights (meta-device builds, shape checks)."""
    return {"pixel": (3 * cfg.patch ** 2, cfg.patch), "taef2": (32, 8)}.get(cfg.name, (None, None))


def _check_resolution(cfg: "RunConfig", prefix: str) -> None:
    """Frames must tile the codec's latent cells, the planner's pooled grid and the generator's patches."""
    m = cfg.model
    factor = latent_geometry(m.codec)[1] or 1
    step = factor * math.lcm(m.planner.downsample, m.generator.patch)
    if cfg.data.resolution % step:
        near = sorted({max(step, cfg.data.resolution // step * step), cfg.data.resolution // step * step + step})
        raise ConfigError(
            f"{prefix}data.resolution: {cfg.data.resolution} is not a multiple of {step} (codec {m.codec.name} "
            f"factor {factor} x lcm(model.planner.downsample={m.planner.downsample}, "
            f"model.generator.patch={m.generator.patch})); valid: a multiple of {step}, e.g. "
            f"{' or '.join(map(str, near))}")


def _check_task_mix(cfg: "RunConfig", prefix: str) -> None:
    """mask.task_weights: one weight per task of the training mix (mask.tasks, else eval.tasks), summing > 0."""
    weights = cfg.mask.task_weights
    tasks, source = (cfg.mask.tasks, "mask.tasks") if cfg.mask.tasks else (cfg.eval.tasks, "eval.tasks")
    if weights and (len(weights) != len(tasks) or not sum(weights) > 0):
        raise ConfigError(f"{prefix}mask.task_weights: got {list(weights)}, must be one weight >= 0 per task of "
                          f"{prefix}{source} ({len(tasks)}: {', '.join(tasks)}) with a positive sum; or [] for equal")


def _check_task_frames(cfg: "RunConfig", prefix: str) -> None:
    """Every task evaluated or trained on leaves a given and a generated frame in a `data.frames` clip
    (interpolation gives the first and last frame, so it needs 3)."""
    frames = cfg.data.frames
    for name in dict.fromkeys(cfg.eval.tasks + cfg.mask.tasks):
        refs = {i % frames for i in REGISTRIES["task"].build(name).references(frames)}
        if not 0 < len(refs) < frames:
            raise ConfigError(f"{prefix}data.frames: got {frames}, too few for task {name} (it gives {len(refs)} of "
                              f"{frames} frames and must leave at least one to generate); use more frames")
    if cfg.mask.name == "fixed":
        _check_ref_frames(cfg.mask.ref_frames, frames, prefix)


def _check_ref_frames(ref_frames: Tuple[int, ...], frames: int, prefix: str) -> None:
    """mask.name=fixed: reference indices inside the clip, leaving a given and a generated frame."""
    outside = [i for i in ref_frames if not -frames <= i < frames]
    refs = {i % frames for i in ref_frames if -frames <= i < frames}
    if outside or not 0 < len(refs) < frames:
        raise ConfigError(f"{prefix}mask.ref_frames: got {list(ref_frames)}, must be indices in [-{frames}, "
                          f"{frames - 1}] (data.frames={frames}) leaving at least one frame given and one generated")


def _check_eval_clips(cfg: "RunConfig", prefix: str) -> None:
    """Evaluation scores eval.num_videos clips of the val split, which holds data.num_eval synthetic clips."""
    if cfg.data.dataset == "synthetic" and cfg.data.num_eval < cfg.eval.num_videos:
        raise ConfigError(f"{prefix}data.num_eval: got {cfg.data.num_eval}, must be >= {prefix}eval.num_videos="
                          f"{cfg.eval.num_videos} (the val clips evaluation scores)")


Check = Callable[[Any, str], None]


# ----------------------------------------------------------------------------------------------
# Model components
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannerConfig:
    """MAR planning model P (paper §2.2; design §1.3)."""

    name: str = setting("mar", registry="planner")  # mar (2D RoPE + [NEXT] row token), mar_rope3d, none
    depth: int = setting(8, valid=AT_LEAST_1)  # planning blocks (L1); Table 1: 8 (S) or 16 (L)
    dim: int = setting(4096, valid=AT_LEAST_1)  # hidden size; also the planning-signal width C_low
    mlp_dim: int = setting(4096, valid=AT_LEAST_1)  # MLP hidden size; Table 1: 4096 (S) or 8192 (L)
    heads: int = setting(32, valid=AT_LEAST_1)  # not in the paper; 128-d heads as in Llama
    attention: str = setting("spatiotemporal", registry="attention")  # the block's cross-frame sub-layer
    identity_attention: bool = True  # reference tokens attend only to themselves (§2.3)
    # "token": a reference token sees only itself; "frame": its own frame (the paper is ambiguous)
    identity_scope: str = setting("token", choices=("token", "frame"))
    downsample: int = setting(2, valid=AT_LEAST_1)  # asymmetric resolution: P sees frames 1/downsample the size (§2.1)
    # What P sees (§2.1: "low-resolution latents of low-resolution frames"): "frames" = frames
    # downsampled with antialiasing, then encoded; "pooled" = the full latent average-pooled (aliased)
    input: str = setting("frames", choices=("frames", "pooled"))
    qk_norm: bool = True  # LayerNorm on projected q/k (§2.2, a stability trick)
    rope_theta: float = setting(ROPE_THETA, valid=POSITIVE)  # RoPE base frequency
    recon_head: bool = True  # projection f for the masked-reconstruction warm-up (Eq. 2)
    # weight of P's masked reconstruction (Eq. 2) added to the joint-stage diffusion loss; 0 = the
    # paper, whose joint stage trains on Eq. 3 alone (design §5: deep supervision of the planner)
    recon_weight: float = setting(0.0, valid=NON_NEGATIVE, run_id="if_changed")
    norm_eps: float = setting(1e-6, valid=POSITIVE)  # RMSNorm epsilon

    checks: ClassVar[Tuple[Check, ...]] = (_check_heads, _check_recon)


@dataclass(frozen=True)
class GeneratorConfig:
    """DiT-style diffusion generation model G (paper §2.2; design §1.4)."""

    name: str = setting("dit", registry="generator")  # dit, none (MAR-only ablation, Table 2)
    depth: int = setting(8, valid=AT_LEAST_1)  # generation blocks (L2); 8 in every Table 1 variant
    dim: int = setting(1024, valid=AT_LEAST_1)  # hidden size
    mlp_dim: int = setting(4096, valid=AT_LEAST_1)  # MLP hidden size
    heads: int = setting(16, valid=AT_LEAST_1)  # not in the paper; 64-d heads as in DiT
    attention: str = setting("spatiotemporal", registry="attention")  # /ST; "temporal" gives the /T variants
    identity_attention: bool = True  # reference tokens attend only to themselves (§2.3)
    identity_scope: str = setting("token", choices=("token", "frame"))  # see PlannerConfig.identity_scope
    # "frame": frame i reads its own z_cond_i; "global": every frame's signal
    cross_attention: str = setting("frame", choices=("frame", "global"))
    plan_scale: bool = True  # planning signal -> MLP "scale" (Fig. 2); off = cross-attention only
    cfg_drop_prob: float = setting(0.1, valid=UNIT)  # P(Z_cond -> Z_uncond) in training, for CFG (§2.2: 1/10)
    patch: int = setting(1, valid=AT_LEAST_1)  # latent patch size; the paper's C=16 implies 1
    # "zero": clean reference frames get t=0 in adaLN; "shared": the clip's t
    ref_timestep: str = setting("zero", choices=("zero", "shared"))
    # Not in the paper: "neighbours" also feeds each frame's nearest reference before and after (and
    # where it sits between them) as input channels, as image-to-video models concatenate their
    # conditioning frame (SVD). A small model then reads the references from step one instead of
    # learning to find them through attention first; "none" is the paper's input.
    ref_channels: str = setting("none", choices=("none", "neighbours"))
    qk_norm: bool = True  # as in the planner; keeps attention logits bounded at bf16
    # Not in the paper: what turns tokens back into latents. "linear" (DiT): one projection per token.
    # "conv": that projection refined by two 3x3 convolutions over the latent grid that also read the
    # generator's input (noisy frame and, with ref_channels, its references) at full precision, with
    # the timestep as adaLN (U-ViT ends in a 3x3 conv for the same reason). A token narrower than its
    # input cannot carry the per-value noise it must remove at low noise levels; the convolution can.
    head: str = setting("linear", choices=("linear", "conv"), run_id="if_changed")

    checks: ClassVar[Tuple[Check, ...]] = (_check_heads,)


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule, v-prediction loss and DDIM sampling (paper §2.2; design §2)."""

    schedule: str = setting("cosine", registry="noise schedule")  # the paper does not name it
    train_timesteps: int = setting(1000, valid=AT_LEAST_1)  # discrete training steps of the schedule
    # DDIM steps; the paper uses 25 for all latency/ablation numbers
    sample_steps: int = setting(25, valid=AT_LEAST_1, after_training=True)
    # guidance on the planning signal; paper: 2.5 for image-to-video, none for interpolation
    cfg_scale: float = setting(1.0, valid=NON_NEGATIVE, after_training=True)
    eta: float = setting(0.0, valid=NON_NEGATIVE, after_training=True)  # DDIM stochasticity; 0 = deterministic
    # Not in the paper: the mean of this many samples, each from its own noise (design §5). 1 = one
    # sample, the paper's output. K > 1 is a Monte-Carlo estimate of the posterior mean: it removes
    # what the samples do not share (a short-trained model's speckle, and any real diversity).
    sample_average: int = setting(1, valid=AT_LEAST_1, run_id="if_changed", after_training=True)
    # SD3-style shift of the schedule: every timestep's SNR is divided by shift^2. > 1 is noisier
    # (high resolution, where neighbouring pixels are redundant); < 1 is cleaner (low resolution).
    # "simple diffusion" (Hoogeboom et al. 2023) shifts by base/resolution the same way.
    shift: float = setting(1.0, valid=POSITIVE)
    # Per-timestep loss weight: "uniform" (plain v-MSE, Eq. 3) or "min_snr" (Hang et al. 2023:
    # min(SNR, gamma) / (SNR + 1) for v-prediction; stops easy low-noise steps dominating the gradient)
    loss_weight: str = setting("uniform", choices=("uniform", "min_snr"))
    min_snr_gamma: float = setting(5.0, valid=POSITIVE)
    # Not in the paper: what the diffusion denoises. "none": the frame latent (Eq. 3). "nearest" /
    # "blend": its residual from a training-free guess made from the references (the copy_nearest /
    # linear_blend baselines in latent space), as residual video diffusion does (Yang et al. 2023).
    # What the references already show (a static background) then costs the model nothing, and at
    # initialisation the model samples the baseline itself. Names: "none" or a key of PRIOR_BASELINES.
    prior: str = setting("none", choices=("none", *PRIOR_BASELINES))
    # Not in the paper's configs, but in its practice: sampling per task (it guides image-to-video at 2.5
    # and interpolation not at all). (task, value) pairs replace sample_steps / cfg_scale when the model
    # samples that task's masks; a task not named uses the fields above.
    task_sample_steps: Tuple[Tuple[str, int], ...] = setting((), run_id="if_changed", after_training=True)
    task_cfg_scale: Tuple[Tuple[str, float], ...] = setting((), run_id="if_changed", after_training=True)

    checks: ClassVar[Tuple[Check, ...]] = (_check_task_sampling, _check_sample_steps)


def task_sampling(cfg: DiffusionConfig, task: Optional[str]) -> Dict[str, Any]:
    """`MarDini.sample` keywords for `task`: {"steps", "cfg_scale"}, the task's entries or the defaults."""
    steps, scale = dict(cfg.task_sample_steps), dict(cfg.task_cfg_scale)
    return {"steps": steps.get(task, cfg.sample_steps), "cfg_scale": scale.get(task, cfg.cfg_scale)}


@dataclass(frozen=True)
class CodecConfig:
    """Latent codec: frames <-> latents (paper §2.1 uses an internal 16-ch 8x VAE)."""

    name: str = setting("pixel", registry="codec")  # pixel (identity + patchify) or taef2 (pretrained, 32-ch 8x)
    patch: int = setting(4, valid=AT_LEAST_1)  # pixel codec only: pixels per latent cell along each side
    weights: Optional[str] = None  # taef2 only: folder or file; else $MARDINI_BENCH_WEIGHTS/cache
    # Latents are (z - shift) * scale before the model, so they have mean ~0 and std ~1 and the noise
    # schedule's SNR means what it says (latent diffusion's scale factor). "fixed": use the numbers
    # below (presets carry values measured on their default data: `python -m mardini_bench.data
    # stats`); "estimate": measure them on `stats_clips` training clips at run start (recorded in
    # the checkpoint and result.json).
    normalize: str = setting("fixed", choices=("fixed", "estimate"))
    scale: float = setting(1.0, valid=POSITIVE)
    shift: float = setting(0.0, valid=FINITE)
    stats_clips: int = setting(256, valid=AT_LEAST_1)  # normalize=estimate: training clips the statistics are measured on


@dataclass(frozen=True)
class ModelConfig:
    """One MarDini model: planner + generator + diffusion + codec."""

    planner: PlannerConfig = setting(factory=PlannerConfig)
    generator: GeneratorConfig = setting(factory=GeneratorConfig)
    diffusion: DiffusionConfig = setting(factory=DiffusionConfig)
    codec: CodecConfig = setting(factory=CodecConfig)
    # C when the codec is not built (meta builds); a built codec sets C itself
    latent_channels: int = setting(16, valid=AT_LEAST_1)

    checks: ClassVar[Tuple[Check, ...]] = (_check_model_parts,)


# ----------------------------------------------------------------------------------------------
# Training-time components
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskConfig:
    """Which frames are masked in training (design §3.1). Each schedule reads the fields it needs."""

    # tasks (the evaluated tasks' masks, mixed), uniform, truncnorm, fixed, curriculum (Fig. 4)
    name: str = setting("tasks", registry="mask schedule")
    # tasks / joint_task stage: the tasks to mix; () = the run's eval.tasks
    tasks: Tuple[str, ...] = setting((), registry="task")
    task_weights: Tuple[float, ...] = setting((), valid=NON_NEGATIVE)  # their proportions; () = equal
    min_ref: int = setting(1, valid=AT_LEAST_1)  # uniform: fewest reference (unmasked) frames
    max_ref: int = setting(4, valid=AT_LEAST_1)  # uniform: most reference frames (clamped to frames - 1)
    ratio_mean: float = setting(1.0, valid=UNIT)  # truncnorm: masked-fraction mean (LTH14/mar: 1.0)
    ratio_std: float = setting(0.25, valid=NON_NEGATIVE)  # truncnorm: std (LTH14/mar: 0.25)
    ratio_min: float = setting(0.7, valid=UNIT)  # truncnorm: lowest masked fraction (LTH14/mar: 0.7)
    ref_frames: Tuple[int, ...] = (0, -1)  # fixed: reference frame indices (negative from the end)
    # curriculum: (until_step, min_ref_frac, max_ref_frac) stages; the paper's Fig. 4 moves from
    # easy (many references) to hard (few). Fractions of the clip's frames, as in §2.4.1.
    stages: Tuple[Tuple[float, float, float], ...] = ((1000.0, 0.35, 1.0), (2000.0, 0.15, 0.6), (1e18, 0.06, 0.3))

    checks: ClassVar[Tuple[Check, ...]] = (_check_refs,)


@dataclass(frozen=True)
class DataConfig:
    """Training/eval video source."""

    dataset: str = setting("synthetic", registry="dataset")  # built-in procedural clips; or a folder dataset
    root: Optional[str] = None  # folder datasets: where the videos or frames are
    # K, frames per clip; 9 = VIDIM-Bench form and the fewest the FVD network takes
    frames: int = setting(9, valid=AT_LEAST_2)
    resolution: int = setting(32, valid=AT_LEAST_1)  # square frame side in pixels (generator resolution)
    # clip frame rate; real: None = native / frame_stride; synthetic: motion x 8/fps
    fps: Optional[float] = setting(None, valid=POSITIVE)
    # real videos: take every n-th frame when fps is None (slow-motion vs fast)
    frame_stride: int = setting(1, valid=AT_LEAST_1)
    # real videos: non-overlapping clips per file from its start; 0 = all that fit
    clips_per_video: int = setting(1, valid=AT_LEAST_0)
    # real videos: "raise" on the first bad file, or "skip" it and count it
    on_error: str = setting("raise", choices=("raise", "skip"))
    difficulty: float = setting(0.5, valid=UNIT)  # synthetic: 0 = one slow sprite, 1 = many fast occluding sprites
    # synthetic: ballistic (fast, curved, bouncing) or drift (the slow first version)
    motion: str = setting("ballistic", choices=("ballistic", "drift"))
    num_train: int = setting(2048, valid=AT_LEAST_1)  # synthetic: clips in the train split
    # clips in the val/test split used for evaluation. Each synthetic clip is a function of its seed,
    # split and index, so the val split's size leaves the train split alone
    num_eval: int = setting(64, valid=AT_LEAST_1, after_training=True)
    # DataLoader workers; 0 = the runtime's choice (none on CPU, up to 8 on CUDA)
    workers: int = setting(0, valid=AT_LEAST_0)

    checks: ClassVar[Tuple[Check, ...]] = (_check_root, _check_fps)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper App. B: AdamW, LR 1.4e-4, cosine, warm-up; the rest: design §4.1)."""

    # optimiser steps; CPU scale: a tiny run trains in well under a minute (grids set their own)
    steps: int = setting(100, valid=AT_LEAST_1)
    batch_size: int = setting(8, valid=AT_LEAST_1)  # global batch size
    lr: float = setting(1.4e-4, valid=POSITIVE)  # paper's LR for every stage
    weight_decay: float = setting(0.0, valid=NON_NEGATIVE)  # not in the paper
    betas: Tuple[float, float] = setting((0.9, 0.95), valid=UNIT_OPEN)  # not in the paper; Llama/MAR default
    warmup_steps: int = setting(10, valid=AT_LEAST_0)  # linear warm-up before cosine decay; length not in the paper
    grad_clip: float = setting(1.0, valid=NON_NEGATIVE)  # max global grad norm; 0 disables
    ema_decay: float = setting(0.999, valid=UNIT_OPEN)  # EMA of weights used for evaluation; 0 disables
    stage: str = setting("joint", choices=STAGES)  # generator_warmup | planner_warmup | joint | joint_task (Fig. 4)
    precision: str = setting("auto", choices=("auto", "fp32", "bf16"))  # auto (bf16 autocast on CUDA), fp32, bf16
    checkpoint_every: int = setting(50, valid=AT_LEAST_1)  # steps between atomic last.pt writes
    log_every: int = setting(10, valid=AT_LEAST_1)  # steps between log.jsonl lines
    compile: bool = False  # torch.compile the model
    # Fig. 4 curriculum as (stage, steps) pairs run in order (the last stage continues to `steps`);
    # empty = `stage` for every step
    schedule: Tuple[Tuple[str, int], ...] = ()
    # clips per noise draw: the unit of randomness, so a fixed value gives the same loss curve on any
    # number of processes; 0 = the per-process share of the batch (the curve then depends on it)
    micro_batch: int = setting(0, valid=AT_LEAST_0)
    # steps with a non-finite loss or gradient norm that are skipped (no update) before the run fails;
    # large-scale trainers skip rare spikes this way. 0: the first one fails the run
    skip_nonfinite: int = setting(0, valid=AT_LEAST_0)
    # How the run executes, not what it computes (neither enters the run id): ddp = every process
    # holds the whole model and averages gradients; fsdp = FSDP2 shards parameters, gradients and
    # AdamW state per planner/generator block (the paper's §4.1 setup)
    parallel: str = setting("ddp", choices=("ddp", "fsdp"), run_id="never")
    # recompute each block's activations in backward
    activation_checkpointing: bool = setting(False, run_id="never")

    checks: ClassVar[Tuple[Check, ...]] = (_check_schedule, _check_micro_batch)


@dataclass(frozen=True)
class EvalConfig:
    """What a run scores after training."""

    tasks: Tuple[str, ...] = setting(DEFAULT_TASKS, registry="task")
    metrics: Tuple[str, ...] = setting(("fvd", "fid", "psnr", "ssim"), registry="metric")
    baselines: Tuple[str, ...] = setting(("copy_nearest", "linear_blend"), registry="baseline")
    num_videos: int = setting(8, valid=AT_LEAST_1)  # eval clips per task; CPU scale (raise for a paper-style number)
    batch_size: int = setting(8, valid=AT_LEAST_1)  # clips per sampling call (each call draws its own noise)
    seed: int = setting(0, valid=SEED)  # picks the eval clips and the sampling noise; separate from the training seed
    # frames FID/PSNR/SSIM score: all_frames or middle_frame (of the task)
    protocol: str = setting("all_frames", choices=("all_frames", "middle_frame"))
    weights: Optional[str] = None  # folder of the FVD/FID networks; else $MARDINI_BENCH_WEIGHTS/cache
    samples: int = setting(4, valid=AT_LEAST_0)  # clips per task saved to eval/<task>/samples.npz for sample grids

    checks: ClassVar[Tuple[Check, ...]] = (_check_evaluation,)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; its hash is the run id."""

    model: ModelConfig = setting(factory=ModelConfig)
    mask: MaskConfig = setting(factory=MaskConfig)
    data: DataConfig = setting(factory=DataConfig)
    train: TrainConfig = setting(factory=TrainConfig)
    eval: EvalConfig = setting(factory=EvalConfig)
    seed: int = setting(0, valid=SEED)  # model init, data order, masks and noise

    checks: ClassVar[Tuple[Check, ...]] = (_check_resolution, _check_task_mix, _check_task_frames, _check_eval_clips)


def rules_of(cls: type) -> Dict[str, Dict[str, Any]]:
    """{field name: its rules (registry, choices, valid, run_id, after_training)} of a config class."""
    return {f.name: {"run_id": "always", **f.metadata} for f in dataclasses.fields(cls)}


def _paths(cls: type, prefix: Tuple[str, ...] = ()) -> Iterable[Tuple[Tuple[str, ...], dataclasses.Field]]:
    """(path, field) of every leaf field under `cls`, depth first."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _paths(hints[f.name], prefix + (f.name,))
        else:
            yield prefix + (f.name,), f


# ----------------------------------------------------------------------------------------------
# Overrides
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    # cached: resolving string annotations is 90% of an override's cost, and a sweep plans every point
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_optional(tp: Any) -> Tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, getattr(types, "UnionType", Union)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (a string from the CLI, or a JSON/TOML value) to the annotated type."""
    optional, inner = _is_optional(tp)
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _convert(value, inner, key)
    origin = typing.get_origin(tp)
    if origin is tuple:
        return _convert_tuple(value, tp, key)
    if tp is bool:
        return _convert_bool(value, key)
    if tp in (int, float):
        return _convert_number(value, tp, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    raise ConfigError(f"{key}: cannot override a field of type {_type_name(tp)}")


def _convert_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")


def _convert_number(value: Any, tp: type, key: str) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    try:
        number = float(value) if tp is float else int(str(value), 0) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from None
    if tp is int and (not isinstance(number, int) or isinstance(number, bool)):
        raise ConfigError(f"{key}: expected int, got {value!r}")
    return float(number) if tp is float else number


def _convert_tuple(value: Any, tp: Any, key: str) -> tuple:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("(") and text.endswith(")"):
            text = "[" + text[1:-1] + "]"
        if not text.startswith("["):
            text = "[" + text + "]" if text else "[]"
        text = text.replace("(", "[").replace(")", "]")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            # allow bare words: tasks=[interpolation,expansion]
            value = [v.strip() for v in text.strip("[]").split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list like [a,b], got {value!r}")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
    return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def _unknown_key(cls: type, name: str, prefix: str) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key '{prefix}{name}'{hint} valid: {', '.join(prefix + v for v in valid)}")


def _set(cfg: Any, path: Sequence[str], value: Any, prefix: str = "") -> Any:
    name, rest = path[0], path[1:]
    cls = type(cfg)
    if name not in {f.name for f in dataclasses.fields(cls)}:
        raise _unknown_key(cls, name, prefix)
    tp = _hints(cls)[name]
    key = prefix + name
    if rest:
        child = getattr(cfg, name)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"{key} is a {_type_name(tp)}, it has no field {'.'.join(rest)!r}")
        return dataclasses.replace(cfg, **{name: _set(child, rest, value, key + ".")})
    if dataclasses.is_dataclass(tp):
        new = dataclasses.replace(cfg, **{name: _whole(tp, value, key)})
        return _with_recipe(new, value) if isinstance(cfg, RunConfig) and name == "model" else new
    return dataclasses.replace(cfg, **{name: _convert(value, tp, key)})


def _with_recipe(cfg: "RunConfig", preset: Any) -> "RunConfig":
    """`model=NAME` also sets the preset's training recipe (lr, warm-up, batch, steps) when it has one,
    so a size trains with settings that learn at that size; later `train.*` keys refine it."""
    if not isinstance(preset, str) or preset not in TRAIN_RECIPES:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **TRAIN_RECIPES.build(preset)))


def _whole(tp: type, value: Any, key: str) -> Any:
    """A whole sub-config: a preset name (`model=small`) or a mapping of its fields."""
    if isinstance(value, tp):
        return value
    if isinstance(value, dict):
        return from_dict(tp, value, prefix=key + ".")
    if isinstance(value, str) and tp is ModelConfig:
        try:
            return MODEL_PRESETS.build(value)
        except UnknownComponentError as err:
            raise ConfigError(f"{key}: {err}") from None
    raise ConfigError(f"{key}: expected a {tp.__name__} preset name or mapping, got {value!r}")


def parse_override(text: str) -> Tuple[str, str]:
    """'a.b=c' -> ('a.b', 'c'); anything without '=' is an error naming the text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. model.planner.depth=4)")
    return key.strip(), value.strip()


def apply_overrides(cfg: Any, overrides: Union[Iterable[str], Dict[str, Any]]) -> Any:
    """Return a new config with each dotted override applied in order, then validated. An override
    that a later one undoes (`model.planner.depth=2 model=tiny`) is refused, naming both."""
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    applied: Dict[str, Tuple[Any, Any]] = {}  # key -> (text, the value it holds now)
    for key, value in items:
        cfg = _set(cfg, key.split("."), value)
        _check_kept(cfg, applied, key, value)
        applied[key] = (value, None)
        for earlier, (text, _) in applied.items():  # `key` and what it refines (model=tiny, then model.x=1)
            if earlier == key or key.startswith(earlier + "."):
                applied[earlier] = (text, _value_at(cfg, earlier))
    validate(cfg)
    return cfg


def _value_at(cfg: Any, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), cfg)


def _check_kept(cfg: Any, applied: Dict[str, Tuple[Any, Any]], key: str, text: Any) -> None:
    """Every earlier override still holds after `key`: a whole sub-config (`model=NAME`, which also
    sets its training recipe) replaces what was set under it, and the run would silently differ from
    what the overrides say. The same key again, or a refinement under it, is no conflict (later wins)."""
    for earlier, (earlier_text, value) in applied.items():
        if earlier == key or key.startswith(earlier + "."):
            continue
        now = _value_at(cfg, earlier)
        if now is not value and now != value:
            raise ConfigError(f"{earlier}={earlier_text} is undone by the later {key}={text}, which replaces it; "
                              f"put {key}={text} first")


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field of `cfg` against its rules (registry names, choices, range), recursively, then
    each class's `checks` between fields. Raises a one-line `ConfigError` naming the key, the bad value
    and what is valid."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        rules = f.metadata
        if rules.get("registry") and value is not None:
            _check_names(key, value, REGISTRIES[rules["registry"]])
        if rules.get("choices") and isinstance(value, str) and value not in rules["choices"]:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(rules['choices'])}")
        if rules.get("valid"):
            _check_range(key, value, rules["valid"])
    for check in getattr(type(cfg), "checks", ()):
        check(cfg, prefix)


def _check_names(key: str, value: Any, registry: Any) -> None:
    """Every name is registered, and a list names each entry once: `eval.metrics=[psnr,psnr]` would
    score it twice under another run id, and a repeated task would weigh double in a mix."""
    names = value if isinstance(value, tuple) else (value,)
    for name in names:
        if name not in registry:
            raise ConfigError(f"{key}: {registry.unknown_message(name)}")
    canonical = [registry.resolve(name) for name in names]  # an old alias and its new name are one entry
    twice = sorted({name for name in canonical if canonical.count(name) > 1})
    if twice:
        raise ConfigError(f"{key}: {', '.join(twice)} named more than once in {list(names)}; name each once")


def _check_range(key: str, value: Any, rule: Range) -> None:
    if value is None:  # optional fields (data.fps): None means "not set"
        return
    for item in value if isinstance(value, tuple) else (value,):
        if not rule[0](item):
            raise ConfigError(f"{key}: got {value!r}, must be {rule[1]}")


# ----------------------------------------------------------------------------------------------
# Serialisation and hashing
# ----------------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> Dict[str, Any]:
    """Plain nested dict (tuples become lists), JSON-ready."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, data: Dict[str, Any], prefix: str = "") -> Any:
    """Inverse of `to_dict`; unknown keys and wrong types fail like overrides do."""
    cfg = cls()
    for key, value in data.items():
        tp = _hints(cls).get(key)
        if tp is not None and dataclasses.is_dataclass(tp) and isinstance(value, dict):
            cfg = dataclasses.replace(cfg, **{key: from_dict(tp, value, f"{prefix}{key}.")})
        else:
            cfg = _set(cfg, [key], value, prefix)
    return cfg


def identity_dict(cfg: RunConfig) -> Dict[str, Any]:
    """`to_dict(cfg)` without the fields whose rules say run_id="never", nor those with run_id="if_changed"
    at their default: what names the experiment (run id, resume check)."""
    data = to_dict(cfg)
    defaults = to_dict(type(cfg)())
    for path, f in _paths(type(cfg)):
        policy = f.metadata.get("run_id", "always")
        node, key = _parent(data, path)
        if policy == "never" or (policy == "if_changed" and key in node and node[key] == _parent(defaults, path)[0][key]):
            node.pop(key, None)
    return data


def _parent(data: Dict[str, Any], path: Tuple[str, ...]) -> Tuple[Dict[str, Any], str]:
    """(the dict holding the field at `path` in a nested config dict, the field's key); a missing
    section gives an empty dict, so popping from it is a no-op."""
    *parents, key = path
    for name in parents:
        data = data.get(name, {})
    return data, key


def training_dict(cfg: RunConfig) -> Dict[str, Any]:
    """`identity_dict(cfg)` without `eval` and the fields read only after training (their rules say
    after_training): what decides the trained weights."""
    data = identity_dict(cfg)
    data.pop("eval", None)
    for path, f in _paths(type(cfg)):
        if f.metadata.get("after_training"):
            node, key = _parent(data, path)
            node.pop(key, None)
    return data


def config_hash(cfg: Any, length: int = 10) -> str:
    """Stable short hash of the resolved config: the run id of a sweep point."""
    data = identity_dict(cfg) if isinstance(cfg, RunConfig) else to_dict(cfg)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
