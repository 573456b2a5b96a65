"""Data parallel on CPU: two gloo processes follow the same loss curve as one process."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.multiprocessing as mp

from gloo import free_port, join
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.run import distributed
from mardini_bench.run.train import CHECKPOINT, LOG, train

# micro_batch fixes the unit of randomness, so 1 process x 2 micro-batches == 2 processes x 1.
OVERRIDES = ["model=tiny", "data.frames=5", "data.resolution=16", "data.num_train=10", "train.batch_size=4",
             "train.micro_batch=2", "train.steps=4", "train.warmup_steps=1", "train.log_every=1",
             "train.ema_decay=0.9", 'train.schedule=[["generator_warmup",1],["joint_task",1],["joint",2]]']


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    env = join(rank, world, port)
    try:
        train(apply_overrides(RunConfig(), OVERRIDES), Path(run_dir), env=env)
    finally:
        distributed.shutdown(env)


def _curve(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / LOG).read_text().splitlines()]


def test_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(apply_overrides(RunConfig(), OVERRIDES), tmp_path / "single")
    finally:
        torch.set_num_threads(threads)
    ddp, single = _curve(tmp_path / "ddp"), _curve(tmp_path / "single")
    assert [e["step"] for e in ddp] == [e["step"] for e in single] == [1, 2, 3, 4]  # rank 0 logs alone
    for key in ("loss", "grad_norm"):
        assert torch.allclose(torch.tensor([e[key] for e in ddp]), torch.tensor([e[key] for e in single]),
                              rtol=1e-4, atol=1e-6), key
    a = torch.load(tmp_path / "ddp" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "single" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted([LOG, CHECKPOINT])
