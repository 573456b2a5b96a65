"""Trainer: LR schedule, curriculum stages, data order, checkpoint payload, bit-identical resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mardini_bench.config import ConfigError, RunConfig, apply_overrides
from mardini_bench.run.optim import FlatEMA, FlatParameters
from mardini_bench.run.train import (CHECKPOINT, LOG, PREVIOUS, NonFiniteError, batch_indices, check_train_config,
                                 ema_decay_at, lr_factor, micro_batch, stage_at, train)

# Tiny clips keep a step near 50 ms; the schedule crosses every stage, joint_task included.
TINY = ["model=tiny", "data.frames=5", "data.resolution=16", "data.num_train=10", "train.batch_size=4",
        "train.steps=6", "train.warmup_steps=2", "train.ema_decay=0.9", "train.log_every=1",
        "train.checkpoint_every=100",
        'train.schedule=[["generator_warmup",2],["planner_warmup",1],["joint_task",2],["joint",1]]']


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(*extra: str) -> RunConfig:
    return apply_overrides(RunConfig(), TINY + list(extra))


def losses(run_dir: Path) -> list:
    lines = [json.loads(line) for line in (run_dir / LOG).read_text().splitlines()]
    return [(e["step"], e["loss"], e["stage"]) for e in lines if "loss" in e]


def test_ema_warms_up_so_a_short_run_is_not_evaluated_on_its_first_weights():
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11) and ema_decay_at(0.999, 200) == pytest.approx(201 / 210)
    assert ema_decay_at(0.999, 100_000) == 0.999 and ema_decay_at(0.9, 100) == 0.9
    model = torch.nn.Linear(1, 1, bias=False)
    ema = FlatEMA(model, FlatParameters(model.parameters()), 0.999)
    for step in range(200):  # the weight walks from 0 to 1: the EMA must end near the end, not the start
        model.weight.data.fill_(step / 199)
        ema.update()
    assert 0.85 < ema.module.weight.item() < 1.0  # ~20 steps behind the ramp; a fixed 0.999 would leave ~0.1


def test_lr_warms_up_linearly_then_decays_to_zero():
    f = lr_factor(tiny_cfg("train.steps=12", "train.warmup_steps=4").train)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(8) == pytest.approx(0.5) and f(12) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(4, 12))


def test_stage_follows_schedule_then_keeps_the_last():
    cfg = tiny_cfg("train.steps=8").train
    assert [stage_at(cfg, s) for s in range(8)] == (["generator_warmup"] * 2 + ["planner_warmup"]
                                                   + ["joint_task"] * 2 + ["joint"] * 3)
    assert stage_at(tiny_cfg("train.schedule=[]", "train.stage=planner_warmup").train, 5) == "planner_warmup"


@pytest.mark.parametrize("override, message", [
    ('train.schedule=[["warmup",2]]', "unknown stage 'warmup'"),
    ('train.schedule=[["joint",7]]', "covers 7 steps but train.steps is 6"),
    ("mask.tasks=[interpolaton]", "interpolation"),
])
def test_bad_train_config_names_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        check_train_config(tiny_cfg(override).train)


def test_micro_batch_must_split_the_batch():
    assert micro_batch(tiny_cfg().train, 2) == 2
    with pytest.raises(ConfigError, match="train.micro_batch"):
        micro_batch(tiny_cfg("train.micro_batch=3").train, 1)


def test_each_epoch_visits_every_clip_once_in_a_seeded_order():
    steps = [batch_indices(10, 5, seed=3, step=s) for s in range(4)]
    assert sorted(torch.cat(steps[:2]).tolist()) == list(range(10))
    assert sorted(torch.cat(steps[2:]).tolist()) == list(range(10))
    assert torch.equal(batch_indices(10, 5, seed=3, step=1), steps[1])
    assert not torch.equal(batch_indices(10, 5, seed=4, step=1), steps[1])


def test_checkpoint_payload_and_log(tmp_path):
    result = train(tiny_cfg(), tmp_path)
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert {"model", "ema", "opt", "sched", "step", "config", "rng"} <= set(ckpt)
    assert ckpt["step"] == 6 and ckpt["rng"]["data_position"] == 24
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    logged = losses(tmp_path)
    assert [s for s, _, _ in logged] == [1, 2, 3, 4, 5, 6]
    assert [st for _, _, st in logged] == ["generator_warmup"] * 2 + ["planner_warmup"] + ["joint_task"] * 2 + ["joint"]
    assert all(math.isfinite(loss) for _, loss, _ in logged)
    assert result.summary["steps"] == 6 and result.summary["final_loss"] == logged[-1][1]
    # evaluation uses the EMA copy, which differs from the raw weights after a few steps
    assert result.model is not None and not result.model.training


def test_resume_is_bit_identical_to_a_straight_run(tmp_path):
    cfg = tiny_cfg()
    straight = train(cfg, tmp_path / "straight")
    partial = train(cfg, tmp_path / "resumed", until=3)
    assert partial.summary["steps"] == 3
    resumed = train(cfg, tmp_path / "resumed")
    assert resumed.summary["steps"] == 6
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    events = [json.loads(line) for line in (tmp_path / "resumed" / LOG).read_text().splitlines()]
    assert {"event": "resume", "step": 3} in events
    assert straight.summary["final_loss"] == resumed.summary["final_loss"]


def test_finished_run_resumes_without_training(tmp_path):
    cfg = tiny_cfg("train.steps=2", "train.schedule=[]")
    train(cfg, tmp_path)
    before = (tmp_path / CHECKPOINT).stat().st_mtime_ns
    again = train(cfg, tmp_path)
    assert again.summary["steps"] == 2 and (tmp_path / CHECKPOINT).stat().st_mtime_ns == before


def test_checkpoint_from_another_config_is_refused(tmp_path):
    train(tiny_cfg("train.steps=1", "train.schedule=[]"), tmp_path)
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_cfg("train.steps=2", "train.schedule=[]"), tmp_path)


def test_compiled_training_follows_the_eager_loss_curve(tmp_path, monkeypatch):
    # train.compile=true is the fast path on CPU and GPU (benchmarks/bench_train.py --compile); it must
    # train the same model. Minutes of compiler time on 2 cores if the schedule crossed every stage.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # what a fresh machine does
    extra = ["train.steps=3", 'train.schedule=[["joint",3]]']
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    train(tiny_cfg(*extra), tmp_path / "eager")
    assert not counters["stats"]["unique_graphs"]
    train(tiny_cfg(*extra, "train.compile=true"), tmp_path / "compiled")
    assert counters["stats"]["unique_graphs"] >= 1  # the loss really ran as a compiled graph
    assert not counters["graph_break"]  # randomness is drawn outside it: one graph per stage, no breaks
    eager, compiled = losses(tmp_path / "eager"), losses(tmp_path / "compiled")
    assert [s for s, _, _ in eager] == [s for s, _, _ in compiled] == [1, 2, 3]
    assert [c for _, c, _ in compiled] == pytest.approx([e for _, e, _ in eager], rel=1e-4)


# ----------------------------------------------------------------------------------------------
# Non-finite loss or gradient
# ----------------------------------------------------------------------------------------------
def nan_at(monkeypatch, steps: set) -> None:
    """Make the averaged loss NaN at the given (1-based) steps: `distributed.mean_` gets [grads..., loss]."""
    from mardini_bench.run import distributed

    calls = {"n": 0}
    real = distributed.mean_

    def mean_(tensors, env):
        tensors = list(tensors)
        real(tensors, env)
        calls["n"] += 1
        if calls["n"] in steps:
            tensors[-1].fill_(math.nan)
    monkeypatch.setattr(distributed, "mean_", mean_)


def test_diverging_run_fails_naming_the_step_and_the_last_finite_loss(tmp_path):
    cfg = tiny_cfg("train.steps=4", "train.schedule=[]", "train.warmup_steps=0", "train.lr=1e12", "train.grad_clip=0")
    with pytest.raises(NonFiniteError, match=r"^step (\d+): .* is (nan|inf).*; last finite loss [0-9.]+ at step \d+;"):
        train(cfg, tmp_path)
    assert not (tmp_path / CHECKPOINT).exists()  # the diverged weights are never saved
    assert all(math.isfinite(e["loss"]) for e in map(json.loads, (tmp_path / LOG).read_text().splitlines()))


def test_nonfinite_steps_are_skipped_up_to_the_limit_then_fail(tmp_path, monkeypatch):
    cfg = tiny_cfg("train.steps=4", "train.schedule=[]", "train.skip_nonfinite=1")
    nan_at(monkeypatch, {2})
    result = train(cfg, tmp_path / "once")
    assert result.summary["steps"] == 4 and math.isfinite(result.summary["final_loss"])
    lines = [json.loads(line) for line in (tmp_path / "once" / LOG).read_text().splitlines()]
    assert [(e["step"], e["skipped"]) for e in lines if e.get("event") == "skip_nonfinite"] == [(2, 1)]
    assert [e["step"] for e in lines if "loss" in e] == [1, 3, 4]
    assert torch.load(tmp_path / "once" / CHECKPOINT, weights_only=True)["skipped"] == 1

    nan_at(monkeypatch, {2, 3})
    with pytest.raises(NonFiniteError, match=r"^step 3: loss is nan, after skipping 1 such steps; "
                                             r"last finite loss [0-9.]+ at step 1;"):
        train(cfg, tmp_path / "twice")


# ----------------------------------------------------------------------------------------------
# Damaged checkpoint and log
# ----------------------------------------------------------------------------------------------
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_last_pt_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
    cfg = tiny_cfg("train.steps=4", "train.schedule=[]", "train.checkpoint_every=1")
    train(cfg, tmp_path / "straight")
    train(cfg, tmp_path / "r", until=3)
    assert torch.load(tmp_path / "r" / PREVIOUS, weights_only=True)["step"] == 2  # one older checkpoint kept
    truncate(tmp_path / "r" / CHECKPOINT)
    resumed = train(cfg, tmp_path / "r")
    assert "last.pt is damaged" in capsys.readouterr().err
    assert resumed.summary["steps"] == 4
    events = [json.loads(line) for line in (tmp_path / "r" / LOG).read_text().splitlines()]
    assert {"event": "resume", "step": 2} in events and any(e.get("event") == "damaged_checkpoint" for e in events)
    assert losses(tmp_path / "r") == losses(tmp_path / "straight")  # step 3 trained again, identically
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "r" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_loadable_checkpoint_starts_again_from_step_0(tmp_path):
    cfg = tiny_cfg("train.steps=2", "train.schedule=[]", "train.checkpoint_every=1")
    train(cfg, tmp_path, until=2)
    truncate(tmp_path / CHECKPOINT)
    (tmp_path / PREVIOUS).write_bytes(b"not a checkpoint")
    again = train(cfg, tmp_path)
    assert again.summary["steps"] == 2 and [s for s, _, _ in losses(tmp_path)] == [1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_partial_last_log_line_is_trimmed_on_resume(tmp_path):
    cfg = tiny_cfg("train.steps=3", "train.schedule=[]", "train.checkpoint_every=1")
    train(cfg, tmp_path, until=2)
    with open(tmp_path / LOG, "a") as f:
        f.write('{"step": 3, "loss": 0.9')  # a write cut short by a kill
    train(cfg, tmp_path)
    assert all(json.loads(line) for line in (tmp_path / LOG).read_text().splitlines())  # every line whole
    assert [s for s, _, _ in losses(tmp_path)] == [1, 2, 3]


def test_a_small_training_step_takes_under_half_the_aten_ops_of_the_per_parameter_trainer(tmp_path):
    # The per-parameter trainer (AdamW, clipping and EMA tensor by tensor, RoPE and identity masks rebuilt
    # in every block) ran 17,883 aten ops in this step at batch 8 on the CPU (19,169 in the first profile).
    from torch.profiler import ProfilerActivity, profile

    from mardini_bench.run.distributed import DistEnv
    from mardini_bench.run.train import Trainer
    from mardini_bench.runtime import Runtime

    cfg = apply_overrides(RunConfig(), ["model=small", "train.batch_size=8"])
    trainer = Trainer(cfg, tmp_path, DistEnv(), Runtime.resolve(cfg, device="cpu"))
    video = next(trainer.batches(3))
    for step in range(2):
        trainer.train_step(step, video, trainer.masks(step, video.shape[1]))
    mask = trainer.masks(2, video.shape[1])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step(2, video, mask)
    ops = sum(e.name.startswith("aten::") for e in prof.events())
    assert ops <= 17_883 // 2, ops
