"""Frozen dataclass configs, nested into one `RunConfig`, with typed dotted overrides.

Every field says why it exists. A field whose value names a registry entry carries
`metadata={"registry": KIND}`; `validate()` checks it, so a typo fails before anything runs.

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
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from mardini_bench.registry import MODEL_PRESETS, REGISTRIES, TRAIN_RECIPES, UnknownComponentError


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and what would be valid."""


def _reg(kind: str, default: str) -> Any:
    return field(default=default, metadata={"registry": kind})


# ----------------------------------------------------------------------------------------------
# Model components
# ----------------------------------------------------------------------------------------------
# RoPE base frequency (Su et al. 2021, as in Llama): the planner's `rope_theta` default and the base the
# generator always uses. The generator has no field for it on purpose: a new field would change every
# config hash, and so every run id. Here rather than in models/attention.py so configs stay torch-free.
ROPE_THETA = 10000.0

@dataclass(frozen=True)
class PlannerConfig:
    """MAR planning model P (paper §2.2; design §1.3)."""

    name: str = _reg("planner", "mar")  # mar (2D RoPE + [NEXT] row token), mar_rope3d, none
    depth: int = 8  # planning blocks (L1); Table 1: 8 (S) or 16 (L)
    dim: int = 4096  # hidden size; also the planning-signal width C_low
    mlp_dim: int = 4096  # MLP hidden size; Table 1: 4096 (S) or 8192 (L)
    heads: int = 32  # not in the paper; 128-d heads as in Llama
    attention: str = _reg("attention", "spatiotemporal")  # the block's cross-frame sub-layer
    identity_attention: bool = True  # reference tokens attend only to themselves (§2.3)
    identity_scope: str = "token"  # "token": only itself; "frame": its own frame (paper ambiguous)
    downsample: int = 2  # asymmetric resolution: P sees frames at 1/downsample the size (§2.1)
    # What P sees (§2.1: "low-resolution latents of low-resolution frames"): "frames" = frames
    # downsampled with antialiasing, then encoded; "pooled" = the full latent average-pooled (aliased)
    input: str = "frames"
    qk_norm: bool = True  # LayerNorm on projected q/k (§2.2, a stability trick)
    rope_theta: float = ROPE_THETA  # RoPE base frequency
    recon_head: bool = True  # projection f for the masked-reconstruction warm-up (Eq. 2)
    # weight of P's masked reconstruction (Eq. 2) added to the joint-stage diffusion loss; 0 = the
    # paper, whose joint stage trains on Eq. 3 alone (design §5: deep supervision of the planner)
    recon_weight: float = 0.0
    norm_eps: float = 1e-6  # RMSNorm epsilon


@dataclass(frozen=True)
class GeneratorConfig:
    """DiT-style diffusion generation model G (paper §2.2; design §1.4)."""

    name: str = _reg("generator", "dit")  # dit, none (MAR-only ablation, Table 2)
    depth: int = 8  # generation blocks (L2); 8 in every Table 1 variant
    dim: int = 1024  # hidden size
    mlp_dim: int = 4096  # MLP hidden size
    heads: int = 16  # not in the paper; 64-d heads as in DiT
    attention: str = _reg("attention", "spatiotemporal")  # /ST; "temporal" gives the /T variants
    identity_attention: bool = True  # reference tokens attend only to themselves (§2.3)
    identity_scope: str = "token"  # see PlannerConfig.identity_scope
    cross_attention: str = "frame"  # "frame": frame i reads z_cond_i; "global": all frames' signals
    plan_scale: bool = True  # planning signal -> MLP "scale" (Fig. 2); off = cross-attention only
    cfg_drop_prob: float = 0.1  # P(Z_cond -> Z_uncond) in training, for CFG (§2.2: 1/10)
    patch: int = 1  # latent patch size; the paper's C=16 implies 1
    ref_timestep: str = "zero"  # "zero": clean reference frames get t=0 in adaLN; "shared": clip t
    # Not in the paper: "neighbours" also feeds each frame's nearest reference before and after (and
    # where it sits between them) as input channels, as image-to-video models concatenate their
    # conditioning frame (SVD). A small model then reads the references from step one instead of
    # learning to find them through attention first; "none" is the paper's input.
    ref_channels: str = "none"
    qk_norm: bool = True  # as in the planner; keeps attention logits bounded at bf16
    # Not in the paper: what turns tokens back into latents. "linear" (DiT): one projection per token.
    # "conv": that projection refined by two 3x3 convolutions over the latent grid that also read the
    # generator's input (noisy frame and, with ref_channels, its references) at full precision, with
    # the timestep as adaLN (U-ViT ends in a 3x3 conv for the same reason). A token narrower than its
    # input cannot carry the per-value noise it must remove at low noise levels; the convolution can.
    head: str = "linear"


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule, v-prediction loss and DDIM sampling (paper §2.2; design §2)."""

    schedule: str = _reg("noise schedule", "cosine")  # the paper does not name it
    train_timesteps: int = 1000  # discrete training steps of the schedule
    sample_steps: int = 25  # DDIM steps; the paper uses 25 for all latency/ablation numbers
    cfg_scale: float = 1.0  # guidance on the planning signal; paper: 2.5 for I2V, none for interp
    eta: float = 0.0  # DDIM stochasticity; 0 = deterministic
    # Not in the paper: the mean of this many samples, each from its own noise (design §5). 1 = one
    # sample, the paper's output. K > 1 is a Monte-Carlo estimate of the posterior mean: it removes
    # what the samples do not share (a short-trained model's speckle, and any real diversity).
    sample_average: int = 1
    # SD3-style shift of the schedule: every timestep's SNR is divided by shift^2. > 1 is noisier
    # (high resolution, where neighbouring pixels are redundant); < 1 is cleaner (low resolution).
    # "simple diffusion" (Hoogeboom et al. 2023) shifts by base/resolution the same way.
    shift: float = 1.0
    # Per-timestep loss weight: "uniform" (plain v-MSE, Eq. 3) or "min_snr" (Hang et al. 2023:
    # min(SNR, gamma) / (SNR + 1) for v-prediction; stops easy low-noise steps dominating the gradient)
    loss_weight: str = "uniform"
    min_snr_gamma: float = 5.0
    # Not in the paper: what the diffusion denoises. "none": the frame latent (Eq. 3). "nearest" /
    # "blend": its residual from a training-free guess made from the references (the copy_nearest /
    # linear_blend baselines in latent space), as residual video diffusion does (Yang et al. 2023).
    # What the references already show (a static background) then costs the model nothing, and at
    # initialisation the model samples the baseline itself. Names: "none" or a key of PRIOR_BASELINES.
    prior: str = "none"
    # Not in the paper's configs, but in its practice: sampling per task (it guides image-to-video at 2.5
    # and interpolation not at all). (task, value) pairs replace sample_steps / cfg_scale when the model
    # samples that task's masks; a task not named uses the fields above.
    task_sample_steps: Tuple[Tuple[str, int], ...] = ()
    task_cfg_scale: Tuple[Tuple[str, float], ...] = ()


def task_sampling(cfg: DiffusionConfig, task: Optional[str]) -> Dict[str, Any]:
    """`MarDini.sample` keywords for `task`: {"steps", "cfg_scale"}, the task's entries or the defaults."""
    steps, scale = dict(cfg.task_sample_steps), dict(cfg.task_cfg_scale)
    return {"steps": steps.get(task, cfg.sample_steps), "cfg_scale": scale.get(task, cfg.cfg_scale)}


@dataclass(frozen=True)
class CodecConfig:
    """Latent codec: frames <-> latents (paper §2.1 uses an internal 16-ch 8x VAE)."""

    name: str = _reg("codec", "pixel")  # pixel (identity + patchify) or taef2 (pretrained, 32-ch 8x)
    patch: int = 4  # pixel codec only: pixels per latent cell along each side
    weights: Optional[str] = None  # taef2 only: folder or file; else $MARDINI_BENCH_WEIGHTS/cache
    # Latents are (z - shift) * scale before the model, so they have mean ~0 and std ~1 and the noise
    # schedule's SNR means what it says (latent diffusion's scale factor). "fixed": use the numbers
    # below (presets carry values measured on their default data: `python -m mardini_bench.data
    # stats`); "estimate": measure them on `stats_clips` training clips at run start (recorded in
    # the checkpoint and result.json).
    normalize: str = "fixed"
    scale: float = 1.0
    shift: float = 0.0
    stats_clips: int = 256  # normalize=estimate: training clips the statistics are measured on


@dataclass(frozen=True)
class ModelConfig:
    """One MarDini model: planner + generator + diffusion + codec."""

    planner: PlannerConfig = field(default_factory=PlannerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    latent_channels: int = 16  # C when the codec is not built (meta builds); a built codec sets C itself


# ----------------------------------------------------------------------------------------------
# Training-time components
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskConfig:
    """Which frames are masked in training (design §3.1). Each schedule reads the fields it needs."""

    # tasks (the evaluated tasks' masks, mixed), uniform, truncnorm, fixed, curriculum (Fig. 4)
    name: str = _reg("mask schedule", "tasks")
    # tasks / joint_task stage: the tasks to mix; () = the run's eval.tasks
    tasks: Tuple[str, ...] = field(default=(), metadata={"registry": "task"})
    task_weights: Tuple[float, ...] = ()  # their proportions; () = equal
    min_ref: int = 1  # uniform: fewest reference (unmasked) frames
    max_ref: int = 4  # uniform: most reference frames (clamped to frames - 1)
    ratio_mean: float = 1.0  # truncnorm: masked-fraction mean (LTH14/mar: 1.0)
    ratio_std: float = 0.25  # truncnorm: std (LTH14/mar: 0.25)
    ratio_min: float = 0.7  # truncnorm: lowest masked fraction (LTH14/mar: 0.7)
    ref_frames: Tuple[int, ...] = (0, -1)  # fixed: reference frame indices (negative from the end)
    # curriculum: (until_step, min_ref_frac, max_ref_frac) stages; the paper's Fig. 4 moves from
    # easy (many references) to hard (few). Fractions of the clip's frames, as in §2.4.1.
    stages: Tuple[Tuple[float, float, float], ...] = ((1000.0, 0.35, 1.0), (2000.0, 0.15, 0.6), (1e18, 0.06, 0.3))


@dataclass(frozen=True)
class DataConfig:
    """Training/eval video source."""

    dataset: str = _reg("dataset", "synthetic")  # built-in procedural clips; or a folder dataset
    root: Optional[str] = None  # folder datasets: where the videos or frames are
    frames: int = 9  # K, frames per clip; 9 = VIDIM-Bench form and the fewest the FVD network takes
    resolution: int = 32  # square frame side in pixels (generator resolution)
    fps: Optional[float] = None  # clip frame rate; real: None = native / frame_stride; synthetic: motion x 8/fps
    frame_stride: int = 1  # real videos: take every n-th frame when fps is None (slow-motion vs fast)
    clips_per_video: int = 1  # real videos: non-overlapping clips per file from its start; 0 = all that fit
    on_error: str = "raise"  # real videos: "raise" on the first bad file, or "skip" it and count it
    difficulty: float = 0.5  # synthetic: 0 = one slow sprite, 1 = many fast occluding sprites
    motion: str = "ballistic"  # synthetic: ballistic (fast, curved, bouncing) or drift (the slow first version)
    num_train: int = 2048  # synthetic: clips in the train split
    num_eval: int = 64  # clips in the val/test split used for evaluation
    workers: int = 0  # DataLoader workers; 0 = the runtime's choice (none on CPU, up to 8 on CUDA)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper App. B: AdamW, LR 1.4e-4, cosine, warm-up; the rest: design §4.1)."""

    steps: int = 100  # optimiser steps; CPU scale: a tiny run trains in well under a minute (grids set their own)
    batch_size: int = 8  # global batch size
    lr: float = 1.4e-4  # paper's LR for every stage
    weight_decay: float = 0.0  # not in the paper
    betas: Tuple[float, float] = (0.9, 0.95)  # not in the paper; Llama/MAR default
    warmup_steps: int = 10  # linear warm-up before cosine decay; length not in the paper
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # EMA of weights used for evaluation; 0 disables
    stage: str = "joint"  # generator_warmup | planner_warmup | joint | joint_task (Fig. 4)
    precision: str = "auto"  # auto (bf16 autocast on CUDA), fp32, bf16
    checkpoint_every: int = 50  # steps between atomic last.pt writes
    log_every: int = 10  # steps between log.jsonl lines
    compile: bool = False  # torch.compile the model
    # Fig. 4 curriculum as (stage, steps) pairs run in order (the last stage continues to `steps`);
    # empty = `stage` for every step
    schedule: Tuple[Tuple[str, int], ...] = ()
    # clips per noise draw: the unit of randomness, so a fixed value gives the same loss curve on any
    # number of processes; 0 = the per-process share of the batch (the curve then depends on it)
    micro_batch: int = 0
    # steps with a non-finite loss or gradient norm that are skipped (no update) before the run fails;
    # large-scale trainers skip rare spikes this way. 0: the first one fails the run
    skip_nonfinite: int = 0
    # How the run executes, not what it computes (neither enters the run id, see RUN_ID_EXCLUDES):
    # ddp = every process holds the whole model and averages gradients; fsdp = FSDP2 shards
    # parameters, gradients and AdamW state per planner/generator block (the paper's §4.1 setup)
    parallel: str = "ddp"
    activation_checkpointing: bool = False  # recompute each block's activations in backward


@dataclass(frozen=True)
class EvalConfig:
    """What a run scores after training."""

    tasks: Tuple[str, ...] = field(default=("interpolation", "image_to_video", "expansion"),
                                   metadata={"registry": "task"})
    metrics: Tuple[str, ...] = field(default=("fvd", "fid", "psnr", "ssim"), metadata={"registry": "metric"})
    baselines: Tuple[str, ...] = field(default=("copy_nearest", "linear_blend"), metadata={"registry": "baseline"})
    num_videos: int = 8  # eval clips per task; CPU scale (raise for a paper-style number)
    batch_size: int = 8
    seed: int = 0  # picks the eval clips and the sampling noise; separate from the training seed
    protocol: str = "all_frames"  # frames FID/PSNR/SSIM score: all_frames or middle_frame (of the task)
    weights: Optional[str] = None  # folder of the FVD/FID networks; else $MARDINI_BENCH_WEIGHTS/cache
    samples: int = 4  # clips per task saved to eval/<task>/samples.npz for sample grids


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; its hash is the run id."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0  # model init, data order, masks and noise


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
    """Check every registry-named field against its registry, then choices, ranges and shapes,
    recursively. Raises a one-line `ConfigError` naming the key, the bad value and what is valid."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
        elif "registry" in f.metadata and value is not None:
            _check_names(key, value, REGISTRIES[f.metadata["registry"]])
    _check_ranges(cfg, prefix)


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


# DiffusionConfig.prior -> the BASELINES entry that makes the guess. The short names are what configs
# have always said, and configs are hashed into run ids, so they stay; a new prior is a new entry here.
PRIOR_BASELINES: Dict[str, str] = {"nearest": "copy_nearest", "blend": "linear_blend"}

# Training stages (paper Fig. 4), in curriculum order: `train.stage`, `train.schedule`, `MarDini.set_stage`.
STAGES = ("generator_warmup", "planner_warmup", "joint", "joint_task")

CHOICES: Dict[str, Tuple[str, ...]] = {
    "identity_scope": ("token", "frame"), "input": ("frames", "pooled"),
    "normalize": ("fixed", "estimate"), "loss_weight": ("uniform", "min_snr"),
    "ref_channels": ("none", "neighbours"), "head": ("linear", "conv"),
    "prior": ("none", *PRIOR_BASELINES),
    "motion": ("ballistic", "drift"),
    "on_error": ("raise", "skip"),
    "cross_attention": ("frame", "global"), "ref_timestep": ("zero", "shared"),
    "precision": ("auto", "fp32", "bf16"), "parallel": ("ddp", "fsdp"),
    "stage": STAGES,
}

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

# Field ranges per config class (tuple fields: every element). Checked by `validate`, so
# `--dry-run`, the runner and a sweep's submission refuse the same values before anything runs.
RANGES: Dict[str, Dict[str, Range]] = {
    "PlannerConfig": {"depth": AT_LEAST_1, "dim": AT_LEAST_1, "mlp_dim": AT_LEAST_1, "heads": AT_LEAST_1,
                      "downsample": AT_LEAST_1, "rope_theta": POSITIVE, "norm_eps": POSITIVE,
                      "recon_weight": NON_NEGATIVE},
    "GeneratorConfig": {"depth": AT_LEAST_1, "dim": AT_LEAST_1, "mlp_dim": AT_LEAST_1, "heads": AT_LEAST_1,
                        "cfg_drop_prob": UNIT, "patch": AT_LEAST_1},
    "DiffusionConfig": {"train_timesteps": AT_LEAST_1, "sample_steps": AT_LEAST_1, "sample_average": AT_LEAST_1,
                        "cfg_scale": NON_NEGATIVE, "eta": NON_NEGATIVE, "shift": POSITIVE, "min_snr_gamma": POSITIVE},
    "CodecConfig": {"patch": AT_LEAST_1, "scale": POSITIVE, "shift": FINITE, "stats_clips": AT_LEAST_1},
    "ModelConfig": {"latent_channels": AT_LEAST_1},
    "MaskConfig": {"task_weights": NON_NEGATIVE, "min_ref": AT_LEAST_1, "max_ref": AT_LEAST_1,
                   "ratio_mean": UNIT, "ratio_std": NON_NEGATIVE, "ratio_min": UNIT},
    "DataConfig": {"frames": AT_LEAST_2, "resolution": AT_LEAST_1, "fps": POSITIVE, "frame_stride": AT_LEAST_1,
                   "clips_per_video": AT_LEAST_0, "difficulty": UNIT, "num_train": AT_LEAST_1,
                   "num_eval": AT_LEAST_1, "workers": AT_LEAST_0},
    "TrainConfig": {"steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
                    "betas": UNIT_OPEN, "warmup_steps": AT_LEAST_0, "grad_clip": NON_NEGATIVE,
                    "ema_decay": UNIT_OPEN, "checkpoint_every": AT_LEAST_1, "log_every": AT_LEAST_1,
                    "micro_batch": AT_LEAST_0, "skip_nonfinite": AT_LEAST_0},
    "EvalConfig": {"num_videos": AT_LEAST_1, "batch_size": AT_LEAST_1, "samples": AT_LEAST_0, "seed": SEED},
    "RunConfig": {"seed": SEED},
}


def _check_ranges(cfg: Any, prefix: str) -> None:
    """Choices, numeric ranges and shapes of one config object (not its children)."""
    ranges = RANGES.get(type(cfg).__name__, {})
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in CHOICES and isinstance(value, str) and value not in CHOICES[f.name]:
            raise ConfigError(f"{prefix}{f.name}: {value!r} is not one of {', '.join(CHOICES[f.name])}")
        if f.name in ranges:
            _check_range(f"{prefix}{f.name}", value, ranges[f.name])
    for check in SHAPE_CHECKS.get(type(cfg).__name__, ()):
        check(cfg, prefix)


def _check_range(key: str, value: Any, rule: Range) -> None:
    if value is None:  # optional fields (data.fps): None means "not set"
        return
    for item in value if isinstance(value, tuple) else (value,):
        if not rule[0](item):
            raise ConfigError(f"{key}: got {value!r}, must be {rule[1]}")


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
    tasks, ranges = REGISTRIES["task"], RANGES["DiffusionConfig"]
    for key, plain in (("task_sample_steps", "sample_steps"), ("task_cfg_scale", "cfg_scale")):
        pairs, rule = getattr(cfg, key), ranges[plain]
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


def _check_micro_batch(cfg: "TrainConfig", prefix: str) -> None:
    """A fixed micro-batch must split the global batch (and, at run time, each process's share of it)."""
    if cfg.micro_batch and cfg.batch_size % cfg.micro_batch:
        valid = [m for m in range(1, cfg.batch_size + 1) if cfg.batch_size % m == 0]
        raise ConfigError(f"{prefix}micro_batch: got {cfg.micro_batch}, must divide {prefix}batch_size="
                          f"{cfg.batch_size}; valid: 0 (the per-process share) or {', '.join(map(str, valid[:12]))}")


def _check_schedule(cfg: "TrainConfig", prefix: str) -> None:
    """Fig. 4 curriculum: known stages, positive lengths, no more steps than the run has."""
    for i, (stage, steps) in enumerate(cfg.schedule):
        if stage not in CHOICES["stage"]:
            raise ConfigError(f"{prefix}schedule: unknown stage {stage!r}; valid: {', '.join(CHOICES['stage'])}")
        if steps < 1:
            raise ConfigError(f"{prefix}schedule[{i}]: stage {stage!r} has {steps} steps, must be >= 1")
    covered = sum(steps for _, steps in cfg.schedule)
    if covered > cfg.steps:
        raise ConfigError(f"{prefix}schedule covers {covered} steps but {prefix}steps is {cfg.steps}")


FOLDER_DATASETS = ("video_folder", "frame_folder")


def _check_root(cfg: "DataConfig", prefix: str) -> None:
    """A folder dataset without a folder would fail only once a job starts (after its wait in a queue)."""
    if cfg.dataset in FOLDER_DATASETS and not cfg.root:
        raise ConfigError(f"{prefix}root: {prefix}dataset={cfg.dataset} reads clips from a folder; "
                          f"set {prefix}root=PATH (or {prefix}dataset=synthetic for the built-in clips)")


# data.fps of synthetic clips: their motion per frame is the nominal 8 fps motion x 8 / fps. At 1 fps the
# fastest sprite (0.12 frame widths per frame at 8 fps) moves about a whole frame width between frames,
# and below it the clip no longer shows one motion (at 1e-300 the positions overflow to NaN). At 240 fps,
# the fastest slow-motion cameras, the motion is 1/30 of the nominal; far above it every frame rounds to
# the same picture (copying scores a perfect, infinite PSNR).
SYNTHETIC_FPS = (1.0, 240.0)


def _check_fps(cfg: "DataConfig", prefix: str) -> None:
    low, high = SYNTHETIC_FPS
    if cfg.dataset == "synthetic" and cfg.fps is not None and not low <= cfg.fps <= high:
        raise ConfigError(f"{prefix}fps: got {cfg.fps:g}, must be in [{low:g}, {high:g}] for synthetic clips (or none "
                          f"for the nominal 8 fps): outside it their motion per frame is no longer one motion, "
                          f"or none at all")


def _check_model_parts(cfg: "ModelConfig", prefix: str) -> None:
    """Something must predict frames: the generator, or (MAR-only) the planner's reconstruction head."""
    if cfg.planner.name == "none" and cfg.generator.name == "none":
        raise ConfigError(f"{prefix}planner.name=none and {prefix}generator.name=none leave no model to train; "
                          f"keep at least one")
    if cfg.generator.name == "none" and (cfg.planner.name == "none" or not cfg.planner.recon_head):
        raise ConfigError(f"{prefix}generator.name=none (MAR-only) predicts frames with the planner's head: set "
                          f"{prefix}planner.recon_head=true (got {cfg.planner.recon_head})")


def latent_geometry(cfg: CodecConfig) -> tuple:
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


def _check_evaluation(cfg: "EvalConfig", prefix: str) -> None:
    """A run scores at least one task on at least one metric: an empty list would finish DONE with no
    scores. (Repeats are refused with the names, by `validate`.)"""
    for key, kind in (("tasks", "task"), ("metrics", "metric")):
        if not getattr(cfg, key):
            raise ConfigError(f"{prefix}{key}: empty; a run scores at least one {kind}; valid: "
                              f"{', '.join(REGISTRIES[kind].list())}")


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


SHAPE_CHECKS: Dict[str, Tuple[Callable[[Any, str], None], ...]] = {
    "PlannerConfig": (_check_heads, _check_recon), "GeneratorConfig": (_check_heads,), "MaskConfig": (_check_refs,),
    "TrainConfig": (_check_schedule, _check_micro_batch),
    "RunConfig": (_check_resolution, _check_task_mix, _check_task_frames, _check_eval_clips),
    "DataConfig": (_check_root, _check_fps), "ModelConfig": (_check_model_parts,),
    "DiffusionConfig": (_check_task_sampling, _check_sample_steps), "EvalConfig": (_check_evaluation,),
}


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


# Fields that say how a run executes, not what it computes: a run resumed or repeated with another
# value is the same experiment (fsdp follows ddp's loss curve; checkpointing recomputes bit for bit).
RUN_ID_EXCLUDES = (("train", "parallel"), ("train", "activation_checkpointing"))


# Fields added after results were published, left out of the run id while they hold their default
# (the behaviour every earlier run had): a new option must not rename every existing run.
RUN_ID_NEW_DEFAULTS = {("model", "generator", "head"): "linear", ("model", "diffusion", "sample_average"): 1,
                       ("model", "diffusion", "task_sample_steps"): [], ("model", "diffusion", "task_cfg_scale"): [],
                       ("model", "planner", "recon_weight"): 0.0}


def identity_dict(cfg: RunConfig) -> Dict[str, Any]:
    """`to_dict(cfg)` without RUN_ID_EXCLUDES, nor RUN_ID_NEW_DEFAULTS at their default: what names
    the experiment (run id, resume check)."""
    data = to_dict(cfg)
    for path in RUN_ID_EXCLUDES:
        node, key = _parent(data, path)
        node.pop(key, None)
    for path, default in RUN_ID_NEW_DEFAULTS.items():
        node, key = _parent(data, path)
        if node.get(key) == default:
            node.pop(key)
    return data


def _parent(data: Dict[str, Any], path: Tuple[str, ...]) -> Tuple[Dict[str, Any], str]:
    """(the dict holding the field at `path` in a nested config dict, the field's key); a missing
    section gives an empty dict, so popping from it is a no-op."""
    *parents, key = path
    for name in parents:
        data = data.get(name, {})
    return data, key


# Fields read only after training (how the trained model is sampled, and how many val/test clips
# there are to score it on: each synthetic clip is a function of its seed, split and index, so the
# val split's size leaves the train split alone): runs that differ in nothing else train the same weights.
SAMPLING_FIELDS = (("model", "diffusion", "sample_steps"), ("model", "diffusion", "cfg_scale"),
                   ("model", "diffusion", "eta"), ("model", "diffusion", "sample_average"),
                   ("model", "diffusion", "task_sample_steps"), ("model", "diffusion", "task_cfg_scale"))
EVALUATION_DATA_FIELDS = (("data", "num_eval"),)


def training_dict(cfg: RunConfig) -> Dict[str, Any]:
    """`identity_dict(cfg)` without `eval`, SAMPLING_FIELDS and EVALUATION_DATA_FIELDS: what decides
    the trained weights."""
    data = identity_dict(cfg)
    data.pop("eval", None)
    for path in SAMPLING_FIELDS + EVALUATION_DATA_FIELDS:
        node, key = _parent(data, path)
        node.pop(key, None)
    return data


def config_hash(cfg: Any, length: int = 10) -> str:
    """Stable short hash of the resolved config: the run id of a sweep point."""
    data = identity_dict(cfg) if isinstance(cfg, RunConfig) else to_dict(cfg)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
