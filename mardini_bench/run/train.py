"""Training: AdamW with warm-up + cosine, EMA, grad clipping, autocast, Fig. 4 stages, resumable.

    result = train(cfg, run_dir)          # resumes from run_dir/last.pt when it exists
    result.model                          # the weights to evaluate (EMA when train.ema_decay > 0)

Randomness is a pure function of (seed, stream, step, index): the data order of each epoch, the
masks of each step and the noise of each micro-batch come from `torch.Generator`s seeded from those
numbers. Resuming therefore needs only the step (the data iterator position is `step * batch_size`
clips), the result does not depend on where a run was interrupted, and a fixed `train.micro_batch`
gives the same loss curve on any number of processes. `last.pt` still records the global torch RNG
state, so code that draws from it (none does today) resumes exactly too.

`last.pt` = {model, ema, opt, sched, step, config, rng, loss, wall_s}, written atomically every
`train.checkpoint_every` steps and when training stops. Only rank 0 writes files.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mardini_bench.config import (ConfigError, MaskConfig, RunConfig, TrainConfig, from_dict, identity_dict, to_dict,
                                  validate)
from mardini_bench.data import build_dataset, latent_stats, resident_split
from mardini_bench.factory import build_model
from mardini_bench.io import DamagedFileError, append_jsonl, atomic_file, read_jsonl, write_jsonl
from mardini_bench.run import distributed, fsdp
from mardini_bench.run.distributed import DistEnv
from mardini_bench.run.optim import FlatAdamW, FlatEMA, FlatParameters, ema_weights
from mardini_bench.runtime import Runtime
from models.masks import build_mask_schedule

CHECKPOINT = "last.pt"
PREVIOUS = "prev.pt"  # the checkpoint before last.pt: resume falls back to it when last.pt is damaged
CHECKPOINT_KEYS = {"model", "opt", "sched", "step", "config", "rng", "loss", "wall_s"}
LOG = "log.jsonl"
STREAM_DATA, STREAM_MASK, STREAM_NOISE = 0, 1, 2


# ----------------------------------------------------------------------------------------------
# Pure pieces: seeds, schedules, stages, batch layout
# ----------------------------------------------------------------------------------------------
def derived_seed(seed: int, stream: int, *index: int) -> int:
    """A 63-bit seed mixed from (seed, stream, *index) by numpy's SeedSequence."""
    state = np.random.SeedSequence([seed, stream, *index]).generate_state(1, np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def derived_generator(seed: int, stream: int, *index: int, device: Optional[torch.device] = None) -> Optional[torch.Generator]:
    """A generator on `device` (default CPU) seeded with `derived_seed(seed, stream, *index)`: noise and
    masks are drawn where they are used, so a GPU step copies nothing from the host. A seed draws the
    same numbers on every run of one device kind (CPU and CUDA generators differ); on `meta`, which
    draws nothing, None."""
    if device is not None and torch.device(device).type == "meta":
        return None
    return torch.Generator(device=device or "cpu").manual_seed(derived_seed(seed, stream, *index))


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up to 1 over `warmup_steps`, then cosine decay to 0 at `steps`."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def check_train_config(cfg: TrainConfig) -> None:
    """Fail before building anything on a schedule or a value that cannot run (`config.validate`)."""
    validate(cfg, "train.")


def stage_at(cfg: TrainConfig, step: int) -> str:
    """The curriculum stage of optimiser step `step` (0-based)."""
    end = 0
    for stage, steps in cfg.schedule:
        end += steps
        if step < end:
            return stage
    return cfg.schedule[-1][0] if cfg.schedule else cfg.stage


def micro_batch(cfg: TrainConfig, world_size: int) -> int:
    """Clips per noise draw; the global batch must split into whole micro-batches per process."""
    size = cfg.micro_batch or cfg.batch_size // world_size
    if size < 1 or cfg.batch_size % (size * world_size):
        raise ConfigError(f"train.batch_size={cfg.batch_size} does not split into micro-batches of "
                          f"{size} clips on {world_size} processes; pick a train.micro_batch dividing "
                          f"batch_size / processes")
    return size


def epoch_permutation(num_clips: int, seed: int, epoch: int) -> torch.Tensor:
    """The order clips are read in during `epoch`: a seeded permutation of the split."""
    return torch.randperm(num_clips, generator=derived_generator(seed, STREAM_DATA, epoch))


def batch_indices(num_clips: int, batch: int, seed: int, step: int, first: int = 0,
                  count: Optional[int] = None, perms: Optional[Dict[int, torch.Tensor]] = None) -> torch.Tensor:
    """Dataset indices of global batch `step` (its `count` clips from position `first`, default all):
    epochs of seeded permutations, read in order. `perms` caches permutations by epoch."""
    count = batch if count is None else count
    pos = step * batch + first + torch.arange(count)
    epochs, offsets = pos // num_clips, pos % num_clips
    out = torch.empty(count, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        perm = perms.get(epoch) if perms is not None else None
        if perm is None:
            perm = epoch_permutation(num_clips, seed, epoch)
            if perms is not None:
                perms.clear()  # a run reads epochs in order: the one before is never read again
                perms[epoch] = perm
        out[epochs == epoch] = perm[offsets[epochs == epoch]]
    return out


class StepBatches:
    """Batch sampler: this process's share of every global batch from `start` to `stop`."""

    def __init__(self, num_clips: int, cfg: RunConfig, env: DistEnv, start: int, stop: int) -> None:
        self.num_clips, self.cfg, self.env, self.start, self.stop = num_clips, cfg, env, start, stop
        self.share = cfg.train.batch_size // env.world_size
        self._perms: Dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.stop - self.start

    def indices(self, step: int) -> torch.Tensor:
        """(share,) dataset indices of this process's part of global batch `step`."""
        return batch_indices(self.num_clips, self.cfg.train.batch_size, self.cfg.seed, step,
                             self.env.rank * self.share, self.share, self._perms)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.indices(step).tolist()


# ----------------------------------------------------------------------------------------------
# Checkpoints and logs
# ----------------------------------------------------------------------------------------------
def atomic_torch_save(payload: Dict[str, Any], path: Path, previous: Optional[Path] = None) -> None:
    """Write `path` through a temp file; the file it replaces becomes `previous` when given. Saved
    through a Python file object so that a full disk raises OSError(ENOSPC) (a `NoSpaceError` naming the
    folder), not torch's bare RuntimeError('file write failed')."""
    with atomic_file(path, previous=previous) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def rng_state() -> Dict[str, Any]:
    state: Dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    # RNG states are CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them there
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def fault(err: BaseException) -> str:
    """'Type: first line of the message' (at most 120 characters of it), for one-line reports."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:120]}" if lines else type(err).__name__


def append_log(run_dir: Path, entry: Dict[str, Any]) -> None:
    append_jsonl(run_dir / LOG, entry)


def trim_log(run_dir: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from (they will be logged again), and any line
    that is not whole JSON (a write cut short by a kill or a full disk)."""
    path = run_dir / LOG
    if path.exists():
        write_jsonl(path, [entry for entry in read_jsonl(path) if entry.get("step", 0) <= step])


# ----------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------
class NonFiniteError(RuntimeError):
    """The loss or gradient norm became NaN or infinite (more often than `train.skip_nonfinite` allows)."""


@dataclass
class TrainResult:
    model: torch.nn.Module  # weights to evaluate: the EMA copy, or the raw model without EMA
    summary: Dict[str, Any]  # {steps, final_loss, wall_s}
    env: DistEnv


def ema_decay_at(decay: float, num_averaged: int) -> float:
    """EMA decay after `num_averaged` updates: min(decay, (1 + n) / (10 + n)), diffusers' EMA warm-up.

    A fixed 0.999 over a 200-step CPU run would leave 82% of the EMA on the first step's weights
    (0.999^200), so short runs would be evaluated on a nearly untrained model; the warm-up makes
    the EMA follow the model early and reach `decay` after ~9k updates."""
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


@dataclass
class StepStats:
    """What one step leaves on the device until the host reads it (`Trainer.settle`)."""

    step: int  # 0-based
    loss: torch.Tensor  # 0-d, averaged over micro-batches and processes
    grad_norm: torch.Tensor  # 0-d, before clipping
    lr: float
    mask: Optional[torch.Tensor] = None  # (B, T) masks, kept on log steps for the reference-frame counts


class Trainer:
    """One run's model, EMA, optimiser and LR schedule, restored from `last.pt` when present.

    A step makes no host sync: the loss, the gradient norm and whether both are finite stay on the
    device, where a non-finite step skips itself (`FlatAdamW`, `FlatEMA`). The host reads the pending
    steps in one transfer at log and checkpoint steps (`settle`) and there logs them, counts skipped
    steps and fails naming the step, exactly as a check after every step would; no checkpoint is
    written before the steps it holds were read."""

    def __init__(self, cfg: RunConfig, run_dir: Path, env: DistEnv, runtime: Runtime) -> None:
        check_train_config(cfg.train)
        self.cfg, self.run_dir, self.env, self.runtime = cfg, Path(run_dir), env, runtime
        self.device = runtime.device
        self.micro = micro_batch(cfg.train, env.world_size)
        torch.manual_seed(cfg.seed)  # model init
        self.model = build_model(cfg, device=self.device)
        distributed.broadcast_(self.model.state_dict().values(), env)
        self.model.set_grad_checkpointing(cfg.train.activation_checkpointing)
        self._place()
        self.opt = self._build_optimizer()
        self.ema = self._build_ema()
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(cfg.train))
        self.step, self.loss, self.wall_s = 0, math.nan, 0.0
        self.loss_step, self.skipped = 0, 0  # step of the last finite loss; non-finite steps skipped
        self.pending: List[StepStats] = []
        self._mark = (time.perf_counter(), 0)  # (time, step) the last settled step ended at
        self.mask_fn = build_mask_schedule(self.mask_config())
        self.task_mask_fn = build_mask_schedule(replace(self.mask_config(), name="tasks"))  # joint_task stage
        self.loss_fn = torch.compile(self.model.losses) if cfg.train.compile else self.model.losses

    def _place(self) -> None:
        """Hook for how the processes hold the model: every process the whole model (this class)."""

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the model's parameters bound flat (`run/optim.py`): a few ops a step, not one per tensor."""
        t = self.cfg.train
        self.flat = FlatParameters(self.model.parameters())
        return FlatAdamW(self.flat, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    def _build_ema(self) -> Optional[FlatEMA]:
        return FlatEMA(self.model, self.flat, self.cfg.train.ema_decay) if self.cfg.train.ema_decay > 0 else None

    def mask_config(self) -> MaskConfig:
        """`cfg.mask` with its task mix resolved: no `mask.tasks` means the tasks the run evaluates."""
        return replace(self.cfg.mask, tasks=self.cfg.mask.tasks or self.cfg.eval.tasks)

    def estimate_latent_stats(self) -> None:
        """codec.normalize=estimate: set the model's latent shift/scale from training clips (fresh runs
        only; a resumed run restores them from its checkpoint with the weights)."""
        if self.cfg.model.codec.normalize != "estimate":
            return
        data = build_dataset(self.cfg.data, "train")
        mean, std = latent_stats(self.model.codec, data, self.cfg.model.codec.stats_clips)
        for model in (self.model, getattr(self.ema, "module", None)):
            if model is not None:
                model.latent_shift.fill_(mean)
                model.latent_scale.fill_(1.0 / std)

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                "opt": self.opt.state_dict(), **self.plain_state()}

    def plain_state(self) -> Dict[str, Any]:
        """Everything in a checkpoint but the weights, optimiser and EMA tensors."""
        return {"sched": self.sched.state_dict(), "step": self.step, "config": to_dict(self.cfg),
                "rng": {**rng_state(), "data_position": self.step * self.cfg.train.batch_size},
                "loss": self.loss, "loss_step": self.loss_step, "skipped": self.skipped, "wall_s": self.wall_s}

    def save(self) -> None:
        if self.env.is_main:
            atomic_torch_save(self.state(), self.run_dir / CHECKPOINT, previous=self.run_dir / PREVIOUS)

    def load_checkpoint(self) -> Optional[Dict[str, Any]]:
        """The newest checkpoint that loads: `last.pt`, else `prev.pt`; None when neither does. Damaged
        ones (truncated, garbled, not a checkpoint) are reported, logged and removed."""
        self._refuse_other_format(fsdp.CHECKPOINT, "fsdp")
        damaged = []
        for name in (CHECKPOINT, PREVIOUS):
            try:
                ckpt = torch.load(self.run_dir / name, map_location=self.device, weights_only=True)
            except FileNotFoundError:
                continue
            except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError... on a bad file
                damaged.append((name, fault(err)))
                continue
            if isinstance(ckpt, dict) and CHECKPOINT_KEYS <= set(ckpt):
                self._drop_damaged(damaged, f"resuming from {name} (step {ckpt['step']})")
                return ckpt
            damaged.append((name, "not a training checkpoint"))
        self._drop_damaged(damaged, "starting from step 0")
        return None

    def _refuse_other_format(self, name: str, parallel: str) -> None:
        """A run folder holding the other parallel mode's checkpoint must not silently restart at step 0."""
        if (self.run_dir / name).exists():
            raise ConfigError(f"{self.run_dir / name} was written with train.parallel={parallel}; resume with "
                              f"train.parallel={parallel}, or use a fresh run folder")

    def _drop_damaged(self, damaged: List[tuple], outcome: str) -> None:
        if not damaged or not self.env.is_main:
            return
        for name, fault in damaged:
            print(f"warning: {self.run_dir / name} is damaged ({fault}); {outcome}", file=sys.stderr)
            append_log(self.run_dir, {"event": "damaged_checkpoint", "file": name, "fault": fault})
            path = self.run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def maybe_resume(self) -> bool:
        """Resume from `load_checkpoint()` if there is one; it must come from the same resolved config."""
        ckpt = self.load_checkpoint()
        if ckpt is None:
            return False
        if identity_dict(from_dict(RunConfig, ckpt["config"])) != identity_dict(self.cfg):
            raise ConfigError(f"{self.run_dir / CHECKPOINT} was written by a different config; use a fresh run folder")
        self._restore_weights(ckpt)
        self.sched.load_state_dict(ckpt["sched"])
        self.step, self.loss, self.wall_s = ckpt["step"], ckpt["loss"], ckpt["wall_s"]
        self.loss_step, self.skipped = ckpt.get("loss_step", self.step), ckpt.get("skipped", 0)
        set_rng_state(ckpt["rng"])
        return True

    def _restore_weights(self, ckpt: Dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.opt.load_state_dict(ckpt["opt"])

    # -- one step ----------------------------------------------------------------------------
    def masks(self, step: int, frames: int) -> torch.Tensor:
        """(B_global, T) masks of step `step` on the device: tasks' samplers in joint_task, else `cfg.mask`."""
        B, gen = self.cfg.train.batch_size, derived_generator(self.cfg.seed, STREAM_MASK, step, device=self.device)
        fn = self.task_mask_fn if stage_at(self.cfg.train, step) == "joint_task" else self.mask_fn
        return fn(B, frames, step=step, generator=gen, device=self.device)

    def train_step(self, step: int, video: torch.Tensor, mask: torch.Tensor) -> StepStats:
        """Forward/backward over this process's micro-batches, average over processes, update."""
        self._zero_grad()
        chunks = list(zip(video.split(self.micro), mask.split(self.micro)))
        first = self.env.rank * len(chunks)  # global index of this process's first micro-batch
        total = torch.zeros((), device=self.device)
        for i, (v, m) in enumerate(chunks):
            self._before_backward(last=i + 1 == len(chunks))
            gen = derived_generator(self.cfg.seed, STREAM_NOISE, step, first + i, device=self.device)
            with self.runtime.autocast():
                z, z_low = self.model.encode(v), self.model.encode_low(v)
                draws = self.model.draw_training(z, gen)  # outside the compiled loss: one graph
                loss = self.loss_fn(z, m, draws, z_low)["loss"] / len(chunks)
            loss.backward()
            total += loss.detach().float()
        return self._update(step, total)

    def _update(self, step: int, loss: torch.Tensor) -> StepStats:
        """Average over processes, clip, update; a non-finite loss or gradient norm makes the update and
        the EMA's a no-op on the device (every process sees the same averaged numbers, so all skip)."""
        lr = self.opt.param_groups[0]["lr"]
        self._average_gradients(loss)
        grad_norm = self._clip_gradients()
        finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
        self._optimizer_step(finite)
        self.sched.step()  # a skipped step still moves the schedule: the LR stays a function of the step
        if self.ema is not None:
            self._update_ema(finite)
        return StepStats(step, loss, grad_norm, lr)

    def _zero_grad(self) -> None:
        self.flat.zero_grad()

    def _before_backward(self, last: bool) -> None:
        """Hook before each micro-batch's backward (`last`: the step's final one)."""

    def _average_gradients(self, loss: torch.Tensor) -> None:
        distributed.mean_([self.flat.grad, loss], self.env)

    def _clip_gradients(self) -> torch.Tensor:
        """The global gradient norm (0-d), after scaling the gradients to at most `train.grad_clip`
        (torch's `clip_grad_norm_` rule: coefficient max / (norm + 1e-6), capped at 1)."""
        norm = self.flat.grad_norm()
        if self.cfg.train.grad_clip > 0:
            self.flat.grad.mul_((self.cfg.train.grad_clip / (norm + 1e-6)).clamp(max=1.0))
        return norm

    def _optimizer_step(self, finite: torch.Tensor) -> None:
        self.opt.step(skip=~finite)

    def _update_ema(self, finite: torch.Tensor) -> None:
        self.ema.update(finite)

    def settle(self) -> None:
        """Read the pending steps' loss and gradient norm in one transfer, then log each, count the
        non-finite ones and fail at the step a per-step check would have failed at."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        values = torch.stack([torch.stack((s.loss.float(), s.grad_norm.float())) for s in pending]).tolist()
        (then, first), now = self._mark, time.perf_counter()
        seconds = (now - then) / max(1, self.step - first)  # mean wall time per step since the last read
        self._mark = (now, self.step)
        for stats, (loss, grad_norm) in zip(pending, values):
            numbers = {"loss": loss, "lr": stats.lr, "grad_norm": grad_norm}
            if math.isfinite(loss) and math.isfinite(grad_norm):
                self.loss, self.loss_step = loss, stats.step + 1
                self._log(stats.step, numbers, stats.mask, seconds)
            else:  # the loss of a skipped step is not finite: never the run's loss
                self._skip_nonfinite(stats.step, numbers)

    def _skip_nonfinite(self, step: int, stats: Dict[str, float]) -> None:
        """Count a non-finite step; raise `NonFiniteError` once more than `train.skip_nonfinite` were."""
        self.skipped += 1
        allowed = self.cfg.train.skip_nonfinite
        if self.skipped > allowed:
            last = (f"last finite loss {self.loss:.6g} at step {self.loss_step}" if math.isfinite(self.loss)
                    else "no finite loss before it")
            bad = (f"loss is {stats['loss']}" if not math.isfinite(stats["loss"])
                   else f"grad norm is {stats['grad_norm']} (loss {stats['loss']:.6g})")
            skipped = f", after skipping {allowed} such steps" if allowed else ""
            raise NonFiniteError(f"step {step + 1}: {bad}{skipped}; {last}; lower train.lr, set train.grad_clip, "
                                 "or skip a few with train.skip_nonfinite=N")
        if self.env.is_main:
            append_log(self.run_dir, {"event": "skip_nonfinite", "step": step + 1, "skipped": self.skipped,
                                      "grad_norm": stats["grad_norm"]})

    # -- the loop ----------------------------------------------------------------------------
    def batches(self, stop: int) -> Iterator[torch.Tensor]:
        """This process's clips (share, T, 3, H, W) of every step from `self.step` to `stop`, on the device:
        gathered from the split held there when it fits (`data.resident`), else streamed by a DataLoader."""
        data = build_dataset(self.cfg.data, "train")  # the data config fixes the clips; the seed their order
        order = StepBatches(len(data), self.cfg, self.env, self.step, stop)
        clips = resident_split(data, self.cfg.data, self.runtime, reads=len(order) * order.share)
        if clips is not None:
            for step in range(self.step, stop):
                yield clips.index_select(0, self.runtime.to(order.indices(step)))
            return
        loader = DataLoader(data, batch_sampler=order, num_workers=self.runtime.workers,
                            pin_memory=self.runtime.is_cuda)
        for video in loader:
            yield self.runtime.to(video)

    def fit(self, until: Optional[int] = None) -> None:
        """Train from `self.step` to `until` (default `train.steps`), then checkpoint."""
        t = self.cfg.train
        stop = min(t.steps, until if until is not None else t.steps)
        bar = tqdm(total=t.steps, initial=self.step, file=sys.stderr, desc="train",
                   disable=not (self.env.is_main and sys.stderr.isatty()))
        share, begin = t.batch_size // self.env.world_size, self.step
        self._mark = (time.perf_counter(), self.step)
        for video in self.batches(stop):
            step, start = self.step, time.perf_counter()
            self._set_stage(step)
            mask = self.masks(step, video.shape[1])[self.env.rank * share:(self.env.rank + 1) * share]
            stats = self.train_step(step, video, mask)
            self.step = step + 1
            if self._logs(step):
                stats.mask = mask
            self.pending.append(stats)
            if self._logs(step) or self.step % t.checkpoint_every == 0:
                self.settle()
            self.wall_s += time.perf_counter() - start
            bar.update(1)
            if self.step % t.checkpoint_every == 0:
                self.save()
        bar.close()
        self.settle()
        if self.step > begin and self.step % t.checkpoint_every:  # else just saved; prev.pt stays older
            self.save()

    def _logs(self, step: int) -> bool:
        """Whether step `step` (0-based) gets a log line: every `train.log_every`-th and the last."""
        return step % self.cfg.train.log_every == 0 or step + 1 == self.cfg.train.steps

    def _set_stage(self, step: int) -> None:
        stage = stage_at(self.cfg.train, step)
        if stage != self.model.stage:
            self.model.set_stage(stage)

    def _log(self, step: int, stats: Dict[str, float], mask: Optional[torch.Tensor], seconds: float) -> None:
        if not self.env.is_main or mask is None:
            return
        refs = (~mask).sum(1).float()  # reference frames per clip of this process's share
        mean, low, high = torch.stack((refs.mean(), refs.min(), refs.max())).tolist()
        append_log(self.run_dir, {"step": step + 1, **stats, "stage": self.model.stage, "ref_frames_mean": mean,
                                  "ref_frames_min": int(low), "ref_frames_max": int(high), "seconds": seconds})

    def eval_model(self) -> torch.nn.Module:
        model = self.ema.module if self.ema is not None else self.model
        return model.eval()


class FSDPTrainer(Trainer):
    """`train.parallel=fsdp`: the model, its gradients, AdamW state and the EMA sharded over the processes
    (`run/fsdp.py`); checkpoints in `last.dcp/`. On one process nothing is sharded: the same loop, the same
    checkpoint format, so a run moves between process counts in either direction.

    Sharded parameters cannot be bound flat: AdamW is torch's per parameter, and whether a step is
    finite is read on the host each step (FSDP synchronises the processes every step anyway)."""

    def _place(self) -> None:
        self.roots = fsdp.shard(self.model, self.runtime.dtype) if self.env.distributed else []

    def _build_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train  # fused: the kernel the unsharded path runs, so the two follow one curve
        return torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay,
                                 fused=True)

    def _build_ema(self) -> Optional[fsdp.ShardedEMA]:
        if self.cfg.train.ema_decay <= 0:
            return None
        return fsdp.ShardedEMA(self.model, self.cfg.train.ema_decay, ema_decay_at)

    def _zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def _clip_gradients(self) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.train.grad_clip if self.cfg.train.grad_clip > 0 else math.inf
        return fsdp.full(torch.nn.utils.clip_grad_norm_(params, clip))

    def _optimizer_step(self, finite: torch.Tensor) -> None:
        if bool(finite):
            self.opt.step()

    def estimate_latent_stats(self) -> None:
        super().estimate_latent_stats()
        if self.ema is not None:  # the statistics are buffers: the EMA carries them too
            for name in ("latent_shift", "latent_scale"):
                self.ema.averages[name].copy_(getattr(self.model, name))

    def _update_ema(self, finite: torch.Tensor) -> None:
        if bool(finite):
            self.ema.update(self.model)

    def _before_backward(self, last: bool) -> None:
        fsdp.set_gradient_sync(self.roots, last)

    def _average_gradients(self, loss: torch.Tensor) -> None:
        distributed.mean_([loss], self.env)  # FSDP averaged the gradients in its reduce-scatter
        # a network that ran forward without backward (the planner in generator_warmup) is still gathered
        for root in self.roots:
            root.reshard()

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        return {**fsdp.tensor_state(self.model, self.opt, self.ema), **self.plain_state()}

    def save(self) -> None:
        fsdp.save(self.run_dir, fsdp.tensor_state(self.model, self.opt, self.ema), self.plain_state(), self.env)

    def load_checkpoint(self) -> Optional[Dict[str, Any]]:
        """The newest of `last.dcp/`, `prev.dcp/` that loads, its tensors already in the model, optimiser
        and EMA; None when neither does (damaged ones are reported and removed)."""
        self._refuse_other_format(CHECKPOINT, "ddp")
        damaged = []
        for name in (fsdp.CHECKPOINT, fsdp.PREVIOUS):
            folder = self.run_dir / name
            if not folder.is_dir():
                continue
            tensors = fsdp.tensor_state(self.model, self.opt, self.ema)
            try:
                ckpt = fsdp.load(folder, tensors, self.device)
            except Exception as err:  # a missing shard, a truncated file, a foreign folder
                damaged.append((name, f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120]}"))
                continue
            self._drop_damaged(damaged, f"resuming from {name} (step {ckpt['step']})")
            return {**ckpt, **tensors}
        self._drop_damaged(damaged, "starting from step 0")
        return None

    def _restore_weights(self, ckpt: Dict[str, Any]) -> None:
        fsdp.restore(self.model, self.opt, ckpt)
        if self.ema is not None:
            self.ema.load(ckpt["ema"])

    def eval_model(self) -> torch.nn.Module:
        """An unsharded copy of the weights to evaluate (the EMA's when there is one), on every process."""
        weights = self.ema.full_state() if self.ema is not None else fsdp.full_model_state(self.model)
        model = build_model(self.cfg, device=self.device)
        model.load_state_dict({name: weights[name] for name in model.state_dict()})
        return model.eval()


def train(cfg: RunConfig, run_dir: Path, until: Optional[int] = None, env: Optional[DistEnv] = None,
          runtime: Optional[Runtime] = None) -> TrainResult:
    """Train `cfg` in `run_dir` (resuming from `last.pt`), stopping at `until` steps if given.

    The caller owns the process group: `env` defaults to a single process.
    """
    env = env or DistEnv()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer_class = FSDPTrainer if cfg.train.parallel == "fsdp" else Trainer
    runtime = runtime or Runtime.resolve(cfg, local_rank=env.local_rank)
    trainer = trainer_class(cfg, run_dir, env, runtime)
    resumed = trainer.maybe_resume()
    if not resumed:
        trainer.estimate_latent_stats()
    if env.is_main:  # an attempt killed before its first checkpoint left lines the restart will repeat
        trim_log(run_dir, trainer.step)
        if resumed:
            append_log(run_dir, {"event": "resume", "step": trainer.step})
    trainer.fit(until)
    summary = {"steps": trainer.step, "final_loss": trainer.loss, "wall_s": trainer.wall_s,
               "latent_shift": float(trainer.model.latent_shift), "latent_scale": float(trainer.model.latent_scale)}
    return TrainResult(trainer.eval_model(), summary, env)


def trained_checkpoint(run_dir: Path) -> Path:
    """The run's final checkpoint: `last.pt` (ddp), else `last.dcp/` (fsdp); `last.pt`'s path when neither
    exists, so a missing file is named as the default format's."""
    run_dir = Path(run_dir)
    dcp_folder = run_dir / fsdp.CHECKPOINT
    return dcp_folder if not (run_dir / CHECKPOINT).exists() and dcp_folder.is_dir() else run_dir / CHECKPOINT


def load_trained(run_dir: Path, device: Optional[torch.device] = None) -> Tuple[RunConfig, torch.nn.Module, int]:
    """(config, weights to evaluate, step) of the run's final checkpoint (`trained_checkpoint`), as `train`
    returns them: the EMA copy, or the raw model without EMA, in eval mode. Reads only: a damaged
    checkpoint is a `DamagedFileError` naming it (training resumes from its `prev` instead; a finished
    run's weights are these or none). A sharded `last.dcp/` is gathered whole onto this one process."""
    path = trained_checkpoint(run_dir)
    device = device or Runtime.resolve().device
    try:
        if path.suffix == ".dcp":
            return _load_trained_dcp(path, device)
        ckpt = torch.load(path, map_location=device, weights_only=True)
        cfg = from_dict(RunConfig, ckpt["config"])
    except (FileNotFoundError, DamagedFileError):
        raise
    except ConfigError as err:
        raise DamagedFileError(f"{path}: its config no longer loads ({err})") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError... on a bad file
        raise DamagedFileError(f"{path}: not a readable training checkpoint ({fault(err)})") from None
    model = build_model(cfg, device=device)
    model.load_state_dict(ema_weights(ckpt["ema"]) if cfg.train.ema_decay > 0 else ckpt["model"])
    return cfg, model.eval(), int(ckpt["step"])


def _load_trained_dcp(folder: Path, device: torch.device) -> Tuple[RunConfig, torch.nn.Module, int]:
    """`load_trained` for `train.parallel=fsdp`: only the weights to evaluate are read from the shards (the
    EMA averages, else the model), whatever the number of processes that wrote them."""
    if not (folder / fsdp.TRAINER_STATE).is_file():
        raise DamagedFileError(f"{folder}: no {fsdp.TRAINER_STATE} in it (a checkpoint folder cut short)")
    try:
        state = torch.load(folder / fsdp.TRAINER_STATE, map_location=device, weights_only=True)
        cfg = from_dict(RunConfig, state["config"])
    except ConfigError as err:
        raise DamagedFileError(f"{folder}: its config no longer loads ({err})") from None
    model = build_model(cfg, device=device)
    fsdp.load_weights(folder, model, ema=cfg.train.ema_decay > 0)
    return cfg, model.eval(), int(state["step"])


__all__ = ["train", "load_trained", "trained_checkpoint", "Trainer", "FSDPTrainer", "TrainResult", "NonFiniteError",
           "derived_generator", "lr_factor", "stage_at", "batch_indices", "micro_batch", "CHECKPOINT", "PREVIOUS", "LOG"]
