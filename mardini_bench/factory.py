"""`build_model(name_or_config, device=...)`: the one way to turn a config into a MarDini model."""

from __future__ import annotations

from typing import Union

import torch

from mardini_bench.config import ModelConfig, RunConfig, validate
from mardini_bench.registry import MODEL_PRESETS
from models.mardini import MarDini


def resolve_model_config(spec: Union[str, ModelConfig, RunConfig]) -> ModelConfig:
    """A preset name, a ModelConfig, or a RunConfig (its `.model`) -> a validated ModelConfig."""
    if isinstance(spec, str):
        cfg = MODEL_PRESETS.build(spec)
    elif isinstance(spec, RunConfig):
        cfg = spec.model
    elif isinstance(spec, ModelConfig):
        cfg = spec
    else:
        raise TypeError(f"build_model takes a preset name, ModelConfig or RunConfig, not {type(spec).__name__}")
    validate(cfg)
    return cfg


def build_model(spec: Union[str, ModelConfig, RunConfig], device: Union[str, torch.device] = "cpu",
                build_codec: bool = True):
    """Build a `models.mardini.MarDini` with `.planner` and `.generator` submodules.

    On `device="meta"` no memory is allocated and the codec is not loaded, so paper-scale presets
    can be inspected (parameter counts, FLOPs) on any machine.
    """
    cfg = resolve_model_config(spec)
    device = torch.device(device)
    with device:
        model = MarDini(cfg, build_codec=build_codec and device.type != "meta")
    return model
