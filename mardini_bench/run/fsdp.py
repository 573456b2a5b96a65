"""Fully sharded data parallel (`train.parallel=fsdp`): the paper's setup for its 1.3B/3.1B planners (§4.1).

FSDP2 (`torch.distributed.fsdp.fully_shard`) makes every planner and generator block one unit, then the
planner and the generator themselves (their embeddings, heads and Z_uncond). Each process keeps
1/N of the fp32 parameters, gradients and AdamW moments; a unit's full parameters exist only while it
runs, gathered before its forward and its backward. Under bf16 (`train.precision`) the gathered
parameters and the compute are bf16, gradients are reduced in fp32, and the sharded master weights
stay fp32 (`MixedPrecisionPolicy`). The frozen codec is not sharded (it has no gradients).

Checkpoints go through `torch.distributed.checkpoint` (DCP): each process writes its own shards into
`last.dcp/`, with the trainer's plain state (step, LR schedule, RNG, config) in `trainer.pt` beside them.
DCP stores global shapes and reshards on load, so a run saved on N processes resumes on any other
number, one included (one process trains the unsharded model on the same curve). The folder is
written under a temporary name and renamed into place, the previous one kept as `prev.dcp/`.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from mardini_bench.io import naming_full_disk, plain_mode
from mardini_bench.run.distributed import DistEnv

CHECKPOINT, PREVIOUS = "last.dcp", "prev.dcp"
TRAINER_STATE = "trainer.pt"  # the non-tensor state, written by rank 0 into the checkpoint folder


def shard(model: nn.Module, dtype: Optional[torch.dtype]) -> List[FSDPModule]:
    """Shard `model`'s planner and generator in place, block by block; returns the two FSDP roots.

    `dtype` bf16: bf16 parameters and compute with fp32 gradient reduction (master weights stay fp32)."""
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype else MixedPrecisionPolicy()
    # FSDP warns when a unit returns a view (an in-place op on it would skip the backward all-gather);
    # the planner's and generator's outputs are only ever read out of place.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    roots = []
    for net in (model.planner, model.generator):
        if net is None:
            continue
        for block in net.blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(net, mp_policy=policy)
        roots.append(net)
    loose = [name for name, p in model.named_parameters() if p.requires_grad and not isinstance(p, DTensor)]
    if loose:  # a trainable parameter outside every unit would silently train on this process's data only
        raise RuntimeError(f"train.parallel=fsdp: parameters outside the planner and generator: {', '.join(loose)}")
    return roots


def set_gradient_sync(roots: Iterable[FSDPModule], sync: bool) -> None:
    """Reduce-scatter gradients in this backward (True), or keep accumulating them unsharded (False):
    all but the last micro-batch of a step skip the communication."""
    for root in roots:
        root.set_requires_gradient_sync(sync)


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor; a plain tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for a DTensor: every process must call it in the same order)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


class ShardedEMA:
    """EMA of a sharded model's parameters and buffers, kept shard by shard (no full copy anywhere).

    Same rule as the unsharded path's `AveragedModel` with `ema_with_warmup`: the first update copies the
    weights, update n lerps with weight 1 - ema_decay_at(decay, n)."""

    def __init__(self, model: nn.Module, decay: float, decay_at) -> None:
        self.decay, self.decay_at = decay, decay_at
        self.names = [name for name, _ in self._tensors(model)]
        self.averages = {name: t.detach().clone() for name, t in self._tensors(model)}
        self.n_averaged = 0

    @staticmethod
    def _tensors(model: nn.Module):
        yield from model.named_parameters()
        yield from model.named_buffers()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = dict(self._tensors(model))
        ema = [local(self.averages[n]) for n in self.names]
        new = [local(current[n]).to(e.dtype) for n, e in zip(self.names, ema)]
        if self.n_averaged == 0:
            torch._foreach_copy_(ema, new)
        else:
            torch._foreach_lerp_(ema, new, 1.0 - self.decay_at(self.decay, self.n_averaged))
        self.n_averaged += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"averages": self.averages, "n_averaged": torch.tensor(self.n_averaged)}

    def load(self, state: Dict[str, Any]) -> None:
        self.n_averaged = int(state["n_averaged"])

    def full_state(self) -> Dict[str, torch.Tensor]:
        """Whole tensors of every average (collective)."""
        return {name: full(self.averages[name]) for name in self.names}


def full_model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Whole parameters and buffers of a (possibly sharded) model (collective)."""
    return {name: full(t.detach()) for name, t in ShardedEMA._tensors(model)}


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def tensor_state(model: nn.Module, opt: torch.optim.Optimizer, ema: Optional[ShardedEMA]) -> Dict[str, Any]:
    """What DCP saves and loads in place: model and optimiser state by parameter name, and the EMA."""
    model_state, opt_state = get_state_dict(model, opt)
    state = {"model": model_state, "opt": opt_state}
    if ema is not None:
        state["ema"] = ema.state_dict()
    return state


def restore(model: nn.Module, opt: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["opt"])


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def save(run_dir: Path, tensors: Dict[str, Any], trainer_state: Dict[str, Any], env: DistEnv) -> None:
    """Write `run_dir/last.dcp/` whole or not at all; the folder it replaces becomes `prev.dcp/`."""
    final, previous = run_dir / CHECKPOINT, run_dir / PREVIOUS
    partial = run_dir / f".{CHECKPOINT}.partial"
    with naming_full_disk(run_dir, CHECKPOINT):
        if env.is_main:
            shutil.rmtree(partial, ignore_errors=True)  # a save cut short by a kill
        barrier(env)
        dcp.save(tensors, checkpoint_id=partial)
        if env.is_main:
            with open(partial / TRAINER_STATE, "wb") as f:
                torch.save(trainer_state, f)
            partial.chmod(plain_mode(folder=True))
            if final.exists():
                shutil.rmtree(previous, ignore_errors=True)
                final.rename(previous)
            partial.rename(final)
        barrier(env)


def load_weights(folder: Path, model: nn.Module, ema: bool) -> None:
    """Load the weights to evaluate from `folder` into an unsharded `model`, gathered whole whatever the
    number of processes that wrote them: the EMA averages when `ema`, else the model's own weights
    (the keys `tensor_state` saved them under; the optimiser state is not read)."""
    if ema:
        weights = {name: t.detach().clone() for name, t in ShardedEMA._tensors(model)}
        dcp.load({"ema": {"averages": weights}}, checkpoint_id=folder)
    else:
        weights = {name: t.clone() for name, t in model.state_dict().items()}
        dcp.load({"model": weights}, checkpoint_id=folder)
    model.load_state_dict({name: weights[name] for name in model.state_dict()})


def load(folder: Path, tensors: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """Fill `tensors` (from `tensor_state`) in place from `folder`; returns the trainer state."""
    trainer_state = torch.load(folder / TRAINER_STATE, map_location=device, weights_only=True)
    dcp.load(tensors, checkpoint_id=folder)
    return trainer_state
