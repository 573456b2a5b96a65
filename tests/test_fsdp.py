"""FSDP on CPU: two gloo processes sharding the model follow one unsharded process, and a sharded
checkpoint resumes on another number of processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint
import torch.multiprocessing as mp

from gloo import free_port, join
from mardini_bench.config import ConfigError, RunConfig, apply_overrides, config_hash
from mardini_bench.factory import build_model
from mardini_bench.run import distributed, fsdp
from mardini_bench.run.train import CHECKPOINT, LOG, load_trained, train, trained_checkpoint

# Every stage of the Fig. 4 curriculum, micro-batches (gradient accumulation without sync) and the EMA;
# micro_batch fixes the unit of randomness, so 1 process x 2 micro-batches == 2 processes x 1.
OVERRIDES = ["model=tiny", "data.frames=5", "data.resolution=16", "data.num_train=10", "train.batch_size=4",
             "train.micro_batch=2", "train.steps=20", "train.warmup_steps=2", "train.log_every=1",
             "train.checkpoint_every=5", "train.ema_decay=0.9",
             'train.schedule=[["generator_warmup",2],["planner_warmup",2],["joint_task",2],["joint",14]]']
FSDP = ["train.parallel=fsdp"]
STOP = 10  # the interrupted run stops (and checkpoints) here


def _worker(rank: int, world: int, port: int, root: str) -> None:
    env = join(rank, world, port)
    try:
        cfg = apply_overrides(RunConfig(), OVERRIDES + FSDP)
        result = train(cfg, Path(root) / "sharded", env=env)
        if env.is_main:
            torch.save(result.model.state_dict(), Path(root) / "sharded_eval.pt")
        train(cfg, Path(root) / "interrupted", env=env, until=STOP)
        train(apply_overrides(cfg, ["train.precision=bf16"]), Path(root) / "bf16", env=env, until=4)
    finally:
        distributed.shutdown(env)


def _curve(run_dir: Path) -> list:
    lines = [json.loads(line) for line in (run_dir / LOG).read_text().splitlines()]
    return [e for e in lines if "event" not in e]


def _loss_of(weights: dict) -> float:
    """Training loss of these weights on one fixed batch of clips, masks and noise."""
    cfg = apply_overrides(RunConfig(), OVERRIDES)
    model = build_model(cfg)
    model.load_state_dict(weights)
    video = torch.rand(4, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[False, True, True, True, False]] * 4)
    with torch.no_grad():
        return float(model.training_losses(video, mask, generator=torch.Generator().manual_seed(1))["loss"])


def _single_thread(fn):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(2, free_port(), str(root)), nprocs=2, join=True)
    single = _single_thread(lambda: train(apply_overrides(RunConfig(), OVERRIDES), root / "single"))
    torch.save(single.model.state_dict(), root / "single_eval.pt")
    # the checkpoint written by 2 processes, resumed by 1 (unsharded, same checkpoint format)
    _single_thread(lambda: train(apply_overrides(RunConfig(), OVERRIDES + FSDP), root / "interrupted"))
    return root


def test_two_sharded_processes_follow_one_process(runs):
    sharded, single = _curve(runs / "sharded"), _curve(runs / "single")
    assert [e["step"] for e in sharded] == [e["step"] for e in single] == list(range(1, 21))
    for key in ("loss", "grad_norm"):
        a = torch.tensor([e[key] for e in sharded], dtype=torch.float64)
        b = torch.tensor([e[key] for e in single], dtype=torch.float64)
        assert torch.allclose(a, b, rtol=1e-5, atol=0), f"{key}: max rel diff {((a - b).abs() / b.abs()).max():.2e}"
    # The EMA weights each run evaluates compute the same function. (Weights whose true gradient is zero
    # differ: a key bias in a softmax, or q/k over a single planning token. Adam turns the rounding noise
    # in their gradients into lr-sized steps.)
    losses = [_loss_of(torch.load(runs / name)) for name in ("sharded_eval.pt", "single_eval.pt")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert sorted(p.name for p in (runs / "sharded").iterdir()) == sorted([LOG, fsdp.CHECKPOINT, fsdp.PREVIOUS])
    assert (runs / "sharded" / fsdp.CHECKPOINT / fsdp.TRAINER_STATE).exists()


def test_checkpoint_saved_on_two_processes_resumes_on_one(runs):
    resumed, single = _curve(runs / "interrupted"), _curve(runs / "single")
    assert [e["step"] for e in resumed] == list(range(1, 21))
    events = [json.loads(line) for line in (runs / "interrupted" / LOG).read_text().splitlines()]
    assert {"event": "resume", "step": STOP} in events
    after = [e for e in resumed if e["step"] > STOP]
    for e, ref in zip(after, single[STOP:]):
        assert e["loss"] == pytest.approx(ref["loss"], rel=1e-5), e["step"]


def test_a_finished_sharded_run_loads_whole_for_evaluation(runs):
    # the EMA weights read back from the shards 2 processes wrote are the ones the run evaluated
    cfg, model, step = load_trained(runs / "sharded")
    assert step == 20 and cfg.train.parallel == "fsdp"
    evaluated = torch.load(runs / "sharded_eval.pt")
    assert model.state_dict().keys() == evaluated.keys()
    assert all(torch.equal(t, evaluated[name]) for name, t in model.state_dict().items())
    assert trained_checkpoint(runs / "sharded") == runs / "sharded" / fsdp.CHECKPOINT


def test_parallel_mode_is_not_part_of_the_run_id():
    cfg = apply_overrides(RunConfig(), OVERRIDES)
    assert config_hash(cfg) == config_hash(apply_overrides(cfg, FSDP + ["train.activation_checkpointing=true"]))


def test_a_checkpoint_of_the_other_parallel_mode_is_refused(tmp_path):
    cfg = apply_overrides(RunConfig(), OVERRIDES + ["train.schedule=[]", "train.steps=2"])
    train(cfg, tmp_path, until=1)
    assert (tmp_path / CHECKPOINT).exists()
    with pytest.raises(ConfigError, match=r"last\.pt was written with train.parallel=ddp"):
        train(apply_overrides(cfg, FSDP), tmp_path)


def test_bf16_trains_bf16_compute_on_fp32_master_weights(runs):
    fp32, bf16 = _curve(runs / "sharded"), _curve(runs / "bf16")
    assert len(bf16) == 4 and all(torch.isfinite(torch.tensor(e["loss"])) for e in bf16)
    # same weights, batches and noise: the curves differ only by bf16 rounding in the compute (from step 2:
    # at step 1 the zero-initialised output layer predicts exactly 0 in any precision)
    for a, b in zip(bf16[1:], fp32[1:]):
        assert a["loss"] != b["loss"] and a["loss"] == pytest.approx(b["loss"], rel=0.05), a["step"]
    master = build_model(apply_overrides(RunConfig(), OVERRIDES)).state_dict()
    torch.distributed.checkpoint.load({"model": master}, checkpoint_id=runs / "bf16" / fsdp.CHECKPOINT)
    assert {v.dtype for v in master.values()} == {torch.float32}


def test_activation_checkpointing_recomputes_the_same_gradients():
    cfg = apply_overrides(RunConfig(), OVERRIDES)
    grads = []
    for on in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg)
        model.set_grad_checkpointing(on)
        video = torch.rand(2, 5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        mask = torch.tensor([[False, True, True, True, False]] * 2)
        model.training_losses(video, mask, generator=torch.Generator().manual_seed(1))["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
