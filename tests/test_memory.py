"""`python -m mardini_bench.cost memory`: per-GPU training memory under DDP and FSDP."""

from __future__ import annotations

import pytest
import torch

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import CostError, SavedTensorBytes, train_step_fn
from mardini_bench.cost.cli import main
from mardini_bench.cost.memory import COMPONENTS, AutocastEmulation, activation_trace, estimate
from mardini_bench.factory import build_model

# small enough to trace in a second; the blend prior needs real masks, which meta tensors cannot answer
TINY = ["model.diffusion.prior=none", "data.resolution=32", "train.batch_size=8"]


def test_fsdp_shards_every_per_parameter_state_over_the_gpus():
    ddp = estimate("tiny", 4, "ddp", overrides=TINY)
    fsdp = estimate("tiny", 4, "fsdp", overrides=TINY)
    assert ddp["params"] == fsdp["params"] > 0
    for name in ("weights", "adamw", "ema"):
        assert fsdp[name] == pytest.approx(ddp[name] / 4, rel=1e-6), name
    assert ddp["weights"] == 4 * ddp["params"] and ddp["adamw"] == 8 * ddp["params"]
    assert ddp["gathered"] == 0 < fsdp["gathered"] < ddp["weights"]
    assert fsdp["activations"] == ddp["activations"] > 0  # same micro-batch, same compute
    assert fsdp["total"] == sum(fsdp[k] for k in COMPONENTS) < ddp["total"]


def test_activations_scale_with_the_micro_batch_and_shrink_with_checkpointing():
    one = estimate("tiny", 1, "fsdp", micro_batch=1, overrides=TINY)
    two = estimate("tiny", 1, "fsdp", micro_batch=2, overrides=TINY)
    assert two["activations"] == pytest.approx(2 * one["activations"], rel=0.15)
    deep = TINY + ["model.planner.depth=6", "model.generator.depth=6"]
    plain = estimate("tiny", 1, "fsdp", micro_batch=2, overrides=deep)
    ckpt = estimate("tiny", 1, "fsdp", micro_batch=2, checkpointing=True, overrides=deep)
    assert ckpt["activations"] < 0.6 * plain["activations"]


def test_memory_command_prints_each_component(capsys):
    main(["memory", "tiny", *TINY, "--gpus", "2", "--resolution", "32", "--micro-batch", "2"])
    out = capsys.readouterr().out
    assert "fsdp on 2 GPU(s)" in out and all(name in out for name in (*COMPONENTS, "total"))


@pytest.mark.parametrize("gpus, micro, message", [
    (3, None, "does not split over 3 GPUs"),
    (0, None, "--gpus: got 0"),
    (2, 3, "--micro-batch: 3 does not divide the 4 clips"),
])
def test_a_bad_split_is_named(gpus, micro, message):
    with pytest.raises(CostError, match=message):
        estimate("tiny", gpus, "fsdp", micro, overrides=TINY)


@pytest.mark.parametrize("extra", [[], ["model.generator.attention=temporal", "model.planner.depth=3"],
                                   ["model.diffusion.prior=blend", "train.batch_size=2"]])
def test_the_activations_are_what_a_real_step_saves_for_backward(extra):
    # the meta trace behind `activations` against the bytes autograd saves in a real fp32 step on the CPU
    cfg = apply_overrides(RunConfig(), ["model=tiny", *TINY, *extra])
    traced, peak = activation_trace(cfg, cfg.train.batch_size, checkpointing=False, dtype=None)
    model = build_model(cfg).train()
    step = train_step_fn(model, cfg)
    with SavedTensorBytes(model.parameters()) as real:
        step()
    assert traced == pytest.approx(real.peak, rel=0.15) and peak > traced


def test_bf16_compute_saves_matmul_inputs_in_bf16_and_norm_inputs_in_fp32():
    linear, norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)
    x = torch.randn(4, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
        with AutocastEmulation(torch.bfloat16):
            out = norm(linear(x))
    assert out.dtype == torch.float32 and torch.bfloat16 in saved and torch.float32 in saved
    assert activation_trace(apply_overrides(RunConfig(), ["model=tiny", *TINY]), 8, False)[0] < \
        activation_trace(apply_overrides(RunConfig(), ["model=tiny", *TINY]), 8, False, dtype=None)[0]
