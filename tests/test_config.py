"""Registry, frozen configs and dotted overrides: the errors users see must name the key and fix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from mardini_bench.config import (ConfigError, ModelConfig, PlannerConfig, RunConfig, apply_overrides,
                                  config_hash, from_dict, to_dict)
from mardini_bench.registry import MODEL_PRESETS, PLANNERS, Registry, UnknownComponentError


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
