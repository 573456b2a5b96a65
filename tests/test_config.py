"""Registry, frozen configs and dotted overrides: the errors users see must name the key and fix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

from mardini_bench import config
from mardini_bench.config import (ConfigError, ModelConfig, PlannerConfig, RunConfig, apply_overrides,
                                  config_hash, from_dict, to_dict)
from mardini_bench.registry import MODEL_PRESETS, PLANNERS, REGISTRIES, Registry, UnknownComponentError


def model_overrides(*items: str) -> ModelConfig:
    return apply_overrides(ModelConfig(), list(items))


def test_registry_register_build_list_and_deprecation():
    reg = Registry("widget")

    @reg.register
    def round_widget(size=1):
        return ("round", size)

    @reg.register(name="square")
    def make_square(size=1):
        return ("square", size)

    reg.deprecate("circle", "round_widget")
    assert reg.list() == ["round_widget", "square"]
    assert reg.list("sq*") == ["square"]
    assert reg.build("square", size=None) == ("square", 1)  # None means "component default"
    assert reg.build("circle", size=3) == ("round", 3)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(lambda: None, name="square")


def test_unknown_name_lists_valid_names_and_closest_match():
    with pytest.raises(UnknownComponentError) as err:
        PLANNERS.build("marr")
    message = str(err.value)
    assert "unknown planner 'marr'" in message and "did you mean 'mar'?" in message
    assert all(name in message for name in PLANNERS.list())


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PlannerConfig().depth = 3


def test_overrides_are_typed():
    cfg = apply_overrides(RunConfig(), {"train.lr": "3e-4", "train.steps": "12", "model.planner.qk_norm": "false",
                                        "eval.tasks": "[interpolation,expansion]", "mask.ref_frames": "[0,-1]",
                                        "model.codec.weights": "none", "train.betas": "(0.9,0.99)"})
    assert cfg.train.lr == 3e-4 and cfg.train.steps == 12 and cfg.model.planner.qk_norm is False
    assert cfg.eval.tasks == ("interpolation", "expansion") and cfg.mask.ref_frames == (0, -1)
    assert cfg.model.codec.weights is None and cfg.train.betas == (0.9, 0.99)


@pytest.mark.parametrize("override, expected", [
    ("planner.depth=abc", "planner.depth: expected int, got 'abc'"),
    ("planner.depth=2.5", "planner.depth: expected int"),
    ("planner.qk_norm=maybe", "planner.qk_norm: expected bool"),
    ("planer.depth=3", "unknown config key 'planer'; did you mean 'planner'?"),
    ("planner.dept=3", "unknown config key 'planner.dept'; did you mean 'planner.depth'?"),
    ("planner.name=marr", "planner.name: unknown planner 'marr'; did you mean 'mar'?"),
    ("generator.attention=temporl", "generator.attention: unknown attention 'temporl'"),
    ("diffusion.schedule=cosin", "diffusion.schedule: unknown noise schedule 'cosin'"),
    ("codec.name=vae", "codec.name: unknown codec 'vae'"),
    ("generator.cross_attention=all", "generator.cross_attention: 'all' is not one of frame, global"),
    ("planner.depth", "is not of the form key=value"),
    ("planner.depth.x=1", "planner.depth is a int, it has no field 'x'"),
])
def test_bad_overrides_name_the_key_and_what_is_valid(override, expected):
    with pytest.raises(ConfigError) as err:
        model_overrides(override)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_preset_override_then_refinement():
    cfg = apply_overrides(RunConfig(), {"model": "small", "model.planner.depth": 7})
    assert cfg.model.planner.depth == 7
    assert cfg.model.generator == MODEL_PRESETS.build("small").generator
    with pytest.raises(ConfigError, match="unknown model preset 'tinyy'; did you mean 'tiny'"):
        apply_overrides(RunConfig(), {"model": "tinyy"})


def test_dict_round_trip_and_stable_hash():
    cfg = apply_overrides(RunConfig(), ["model=tiny", "mask.stages=[[10,0.5,1.0]]", "seed=3"])
    again = from_dict(RunConfig, to_dict(cfg))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(cfg) != config_hash(apply_overrides(cfg, ["seed=4"]))


def test_a_new_field_at_its_default_keeps_every_earlier_run_id():
    # `small` as trained and sampled before DiffusionConfig.sample_average, .task_* and GeneratorConfig.head existed
    small = apply_overrides(RunConfig(), ["model=small", "model.diffusion.cfg_scale=1.0",
                                          "model.diffusion.sample_average=1", "model.diffusion.train_timesteps=1000",
                                          "model.diffusion.task_cfg_scale=[]", "model.diffusion.task_sample_steps=[]"])
    assert config_hash(small) == "fcb034a4fd"  # its run id then
    # the frozen grids name it `small_v1`: the same config, so the same run ids
    assert apply_overrides(RunConfig(), ["model=small_v1"]) == small
    assert config_hash(apply_overrides(small, ["model.generator.head=conv"])) != config_hash(small)
    assert config_hash(apply_overrides(small, ["model.diffusion.sample_average=2"])) != config_hash(small)
    assert config_hash(apply_overrides(small, ['model.diffusion.task_cfg_scale=[["interpolation",3.0]]'])) \
        != config_hash(small)


def test_params_cli_prints_counts_and_fails_in_one_line():
    ok = subprocess.run([sys.executable, "-m", "mardini_bench.params", "mardini_s_st", "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert '"planner": 134' in ok.stdout  # 1.34B
    for args, needle in ((["tiny", "model.planner.depth=abc"], "model.planner.depth: expected int"),
                         (["tinyy"], "unknown model preset 'tinyy'"),
                         (["tiny", "model.planner.name=marr"], "unknown planner 'marr'")):
        bad = subprocess.run([sys.executable, "-m", "mardini_bench.params", *args], capture_output=True, text=True)
        assert bad.returncode == 2
        assert bad.stderr.strip().count("\n") == 0 and needle in bad.stderr, bad.stderr


# Values the type check lets through but no run can use: refused by `validate` at plan time, so
# `--dry-run`, the runner and a sweep's submission all stop before anything runs.
@pytest.mark.parametrize("override, expected", [
    ("train.steps=-5", "train.steps: got -5, must be >= 1"),
    ("train.batch_size=0", "train.batch_size: got 0, must be >= 1"),
    ("train.lr=nan", "train.lr: got nan, must be a finite number > 0"),
    ("train.lr=inf", "train.lr: got inf"),
    ("train.lr=0", "train.lr: got 0.0"),
    ("train.warmup_steps=-1", "train.warmup_steps: got -1, must be >= 0"),
    ("train.grad_clip=-1", "train.grad_clip: got -1.0, must be a finite number >= 0"),
    ("train.skip_nonfinite=-1", "train.skip_nonfinite: got -1"),
    ("train.betas=[0.9,1.0]", "train.betas: got (0.9, 1.0), must be in [0, 1)"),
    ("train.log_every=0", "train.log_every: got 0"),
    ('train.schedule=[["joint",0]]', "train.schedule[0]: stage 'joint' has 0 steps"),
    ("eval.num_videos=0", "eval.num_videos: got 0, must be >= 1"),
    ("model.planner.depth=-3", "model.planner.depth: got -3, must be >= 1"),
    ("model.generator.mlp_dim=0", "model.generator.mlp_dim: got 0"),
    ("model.planner.heads=0", "model.planner.heads: got 0, must be >= 1"),
    ("model.planner.heads=7", "model.planner.heads: 7 does not split model.planner.dim=64 into heads of even width; "
                              "valid: 1, 2, 4, 8, 16, 32"),
    ("model.generator.heads=48", "model.generator.heads: 48 does not split model.generator.dim=48"),
    ("model.generator.cfg_drop_prob=1.5", "model.generator.cfg_drop_prob: got 1.5, must be in [0, 1]"),
    ("model.codec.scale=0", "model.codec.scale: got 0.0"),
    ("mask.ratio_min=-0.1", "mask.ratio_min: got -0.1, must be in [0, 1]"),
    ("mask.max_ref=2 mask.min_ref=3", "mask.max_ref: got 2, must be >= mask.min_ref=3"),
    ("data.difficulty=2", "data.difficulty: got 2.0, must be in [0, 1]"),
    ("data.frames=1", "data.frames: got 1, must be >= 2"),
    ("data.on_error=ignore", "data.on_error: 'ignore' is not one of raise, skip"),
    ("data.resolution=30", "data.resolution: 30 is not a multiple of 8 (codec pixel factor 4 x "
                           "lcm(model.planner.downsample=2, model.generator.patch=1)); valid: a multiple of 8, "
                           "e.g. 24 or 32"),
    ("model.codec.name=taef2 data.resolution=24", "data.resolution: 24 is not a multiple of 16 (codec taef2 factor 8"),
    # values that used to pass validation and fail only once the run was under way
    ("seed=-1", "seed: got -1, must be a whole number in [0, 4294967295]"),
    ("eval.seed=4294967296", "eval.seed: got 4294967296, must be a whole number in [0, 4294967295]"),
    ("mask.task_weights=[0,0,0]", "mask.task_weights: got [0.0, 0.0, 0.0], must be one weight >= 0 per task of "
                                  "eval.tasks (3: interpolation, image_to_video, expansion) with a positive sum"),
    ("mask.tasks=[expansion] mask.task_weights=[1,2]", "per task of mask.tasks (1: expansion)"),
    ("data.num_eval=1", "data.num_eval: got 1, must be >= eval.num_videos=8"),
    ("data.fps=1e-300", "data.fps: got 1e-300, must be in [1, 240] for synthetic clips"),
    ("data.fps=1e6", "data.fps: got 1e+06, must be in [1, 240]"),
    ("model.diffusion.sample_steps=20 model.diffusion.train_timesteps=9",
     "model.diffusion.sample_steps: got 20, must be <= model.diffusion.train_timesteps=9"),
    ('model.diffusion.train_timesteps=9 model.diffusion.task_sample_steps=[["expansion",12]]',
     "model.diffusion.task_sample_steps (expansion): got 12, must be <= model.diffusion.train_timesteps=9"),
    ("train.micro_batch=3", "train.micro_batch: got 3, must divide train.batch_size=8; valid: 0 (the per-process "
                            "share) or 1, 2, 4, 8"),
    ("data.frames=2", "data.frames: got 2, too few for task interpolation"),
    ("mask.name=fixed mask.ref_frames=[0,20]", "mask.ref_frames: got [0, 20], must be indices in [-9, 8]"),
    ("model.planner.name=none model.generator.name=none", "leave no model to train"),
    ("model.generator.name=none model.planner.recon_head=false", "set model.planner.recon_head=true"),
    ("eval.metrics=[fvdd]", "eval.metrics: unknown metric 'fvdd'; did you mean 'fvd'?"),
    ("eval.baselines=[copy]", "eval.baselines: unknown baseline 'copy'"),
])
def test_out_of_range_values_fail_at_plan_time_naming_key_value_and_valid(override, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), ["model=tiny", *override.split()])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_every_preset_and_edge_values_that_can_run_still_validate():
    for name in MODEL_PRESETS.list():
        apply_overrides(RunConfig(), [f"model={name}"])
    apply_overrides(RunConfig(), ["model=tiny", "train.warmup_steps=0", "train.grad_clip=0", "train.ema_decay=0",
                                  "model.generator.cfg_drop_prob=0", "data.resolution=8", "eval.samples=0",
                                  "data.fps=none", "train.skip_nonfinite=3"])


def test_runner_cli_refuses_a_bad_value_in_one_line_before_making_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    bad = subprocess.run([sys.executable, "-m", "mardini_bench.runner", str(run_dir), "model=tiny", "train.lr=nan"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: train.lr: got nan, must be a finite number > 0"
    assert not run_dir.exists()


# One value outside each kind of range (the rule's own text says what is valid).
OUTSIDE = {id(config.AT_LEAST_1): 0, id(config.AT_LEAST_2): 1, id(config.AT_LEAST_0): -1, id(config.POSITIVE): 0.0,
           id(config.NON_NEGATIVE): -1.0, id(config.FINITE): float("inf"), id(config.UNIT): 1.5,
           id(config.UNIT_OPEN): 1.0, id(config.SEED): -1}


def _field_paths(cls: type = RunConfig, prefix: str = "") -> dict:
    """(config class name, field) -> (dotted key, annotated type), for every field of a run config."""
    paths = {}
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            paths.update(_field_paths(tp, f"{prefix}{f.name}."))
        paths[(cls.__name__, f.name)] = (prefix + f.name, tp)
    return paths


CLASSES = {tp.__name__: tp for tp in [RunConfig, *(t for _, t in _field_paths().values() if dataclasses.is_dataclass(t))]}
RANGED = sorted((cls, name) for cls, tp in CLASSES.items() for name, rules in config.rules_of(tp).items()
                if "valid" in rules)


@pytest.mark.parametrize("cls, name", RANGED)
def test_every_ranged_field_is_refused_at_plan_time_by_its_own_rule(cls, name):
    """The pattern, not the examples: each field's range, given a value outside it, stops `validate` (so the
    runner, `--dry-run` and a sweep's plan) with the key, the value and the rule's text."""
    key, tp = _field_paths()[(cls, name)]
    rule = config.rules_of(CLASSES[cls])[name]["valid"]
    bad = OUTSIDE[id(rule)]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    value = bad if typing.get_origin(tp) is not tuple else [bad] * (1 if args[-1] is Ellipsis else len(args))
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), {"model": "tiny", key: value})
    assert str(err.value).startswith(f"{key}: got ") and rule[1] in str(err.value)


REGISTRY_LISTS = sorted(key for (cls, name), (key, tp) in _field_paths().items()
                        if typing.get_origin(tp) is tuple and "registry" in
                        {f.name: f for f in dataclasses.fields(getattr(config, cls))}[name].metadata)


@pytest.mark.parametrize("key", REGISTRY_LISTS)
def test_a_list_of_registered_names_names_each_once(key):
    """One guard for every list of names (the tasks and metrics evaluated, the baselines, the task mix):
    a repeat would score a metric twice under another run id, or weigh a task double."""
    assert {"eval.tasks", "eval.metrics", "eval.baselines", "mask.tasks"} <= set(REGISTRY_LISTS)
    section, name = key.split(".")
    kind = {f.name: f for f in dataclasses.fields(getattr(RunConfig(), section))}[name].metadata["registry"]
    name = REGISTRIES[kind].list()[0]
    with pytest.raises(ConfigError, match=rf"^{key}: {name} named more than once in \['{name}', '{name}'\]"):
        apply_overrides(RunConfig(), {"model": "tiny", key: [name, name]})


@pytest.mark.parametrize("key, kind", [("eval.tasks", "task"), ("eval.metrics", "metric")])
def test_an_empty_evaluation_is_refused(key, kind):
    with pytest.raises(ConfigError, match=rf"^{key}: empty; a run scores at least one {kind}; valid: "):
        apply_overrides(RunConfig(), ["model=tiny", f"{key}=[]"])
    apply_overrides(RunConfig(), ["model=tiny", "eval.baselines=[]"])  # no baselines: the model alone is scored


@pytest.mark.parametrize("overrides, undone", [
    (["model.planner.depth=3", "model=tiny"], "model.planner.depth=3 is undone by the later model=tiny"),
    (["train.lr=0.1", "model=tiny"], "train.lr=0.1 is undone by the later model=tiny"),  # the preset's recipe
    (["model=tiny", "train.steps=7", "model=small"], "train.steps=7 is undone by the later model=small"),
    ({"model.planner.depth": 3, "model.planner": {"name": "mar"}}, "model.planner.depth=3 is undone by the later"),
])
def test_an_override_undone_by_a_later_one_is_refused(overrides, undone):
    """`model=NAME` replaces the whole model and its training recipe: an earlier key under it would vanish
    from the run (and from nothing else: the run id and the header would look the same)."""
    with pytest.raises(ConfigError) as err:
        apply_overrides(RunConfig(), overrides)
    assert str(err.value).startswith(undone) and "first" in str(err.value)


def test_later_keys_still_refine_and_repeat_earlier_ones():
    cfg = apply_overrides(RunConfig(), ["model=tiny", "model.planner.depth=3", "model.planner.depth=4", "seed=2",
                                        "train.lr=0.003", "model.generator.depth=1"])
    assert (cfg.model.planner.depth, cfg.model.generator.depth, cfg.seed) == (4, 1, 2)
    # an earlier value the preset happens to share is kept, so nothing is lost
    assert apply_overrides(RunConfig(), ["train.lr=0.003", "model=tiny"]).train.lr == 0.003


def test_a_new_setting_is_one_line_that_carries_its_rules():
    """What adding `model.planner.dropout` takes (docs/design.md, "Adding a setting"): the field with its
    range and run-id policy, here made as a subclass; validation, overrides and the run id follow."""
    planner = dataclasses.make_dataclass("PlannerConfig", [("dropout", float, config.setting(
        0.0, valid=config.UNIT, run_id="if_changed"))], bases=(PlannerConfig,), frozen=True)
    model = dataclasses.make_dataclass("ModelConfig", [("planner", planner, config.setting(factory=planner))],
                                       bases=(ModelConfig,), frozen=True)
    run = dataclasses.make_dataclass("RunConfig", [("model", model, config.setting(factory=model))],
                                     bases=(RunConfig,), frozen=True)
    assert config.config_hash(run()) == config.config_hash(RunConfig())  # at its default: no run renamed
    dropped = apply_overrides(run(), ["model.planner.dropout=0.1"])
    assert dropped.model.planner.dropout == 0.1 and config.config_hash(dropped) != config.config_hash(run())
    with pytest.raises(ConfigError, match=r"model.planner.dropout: got 1.5, must be in \[0, 1\]"):
        apply_overrides(run(), ["model.planner.dropout=1.5"])
    with pytest.raises(ConfigError, match="expected float"):
        apply_overrides(run(), ["model.planner.dropout=lots"])
