"""Cost of a config: parameters, FLOPs, sampling latency and training-step memory.

    cost = run_cost(model, cfg)       # the runner calls this after training
    python -m mardini_bench.cost table3 [--json]      # paper Table 3 at paper scale (cost/table3.py)
    python -m mardini_bench.params PRESET             # parameter counts on meta (cost/param_counts.py)

cost/perf.py measures the matmul peak MFU is
reported against, and holds the per-host lock that keeps concurrent runs from timing together.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and SDPA; the
elementwise ops are not counted, as in every MFU convention). It works on the `meta` device, so the
paper-scale presets are counted without allocating anything.

Returned fields (`run_cost`):
    params_planner, params_generator   parameter counts
    flops_train_step    forward + backward of one training step (joint stage, Eq. 3) at
                        train.batch_size x data.frames x data.resolution, on latents (the codec is
                        frozen and not counted); the optimiser update is not counted
    flops_sample        one interpolation video (first and last frames given), sampled as evaluation samples
                        that task (`config.task_sampling`): planner once + steps x sample_average DDIM
                        generator calls, doubled batch when the guidance scale != 1
    latency_sample_s    fastest wall time of `sample_latents` for one video over `repeats` runs
                        after one warm-up run, with this process's torch threads; None on meta
    peak_mem_mb         training step (forward + backward, no optimiser state). CUDA:
                        `torch.cuda.max_memory_allocated`. CPU and meta: an estimate, parameters
                        plus the peak bytes of live tensors created during the step, tracked op by
                        op with a dispatch mode (`LiveTensorBytes`); allocator overhead excluded
    peak_mem_source     "cuda_max_allocated" or "live_tensor_estimate"
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from mardini_bench.config import RunConfig, latent_geometry, task_sampling
from mardini_bench.cost.perf import timing_lock
from mardini_bench.registry import TASKS


class CostError(ValueError):
    """A config or argument that cannot be costed; the message names it and what would be valid."""


# The task whose mask (and per-task sampling) the costed training step and sampled video use.
COSTED_TASK = "interpolation"

# The paper's VAE compresses 8x (§2.1); a model built without its codec (meta) has no factor of its own.
PAPER_LATENT_FACTOR = 8


# ----------------------------------------------------------------------------------------------
# Geometry and inputs
# ----------------------------------------------------------------------------------------------
def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def latent_shape(model: torch.nn.Module, cfg: RunConfig, batch: int) -> Tuple[int, ...]:
    """(B, T, C, h, w) latents of `batch` clips at cfg.data.frames x cfg.data.resolution."""
    if model.codec is not None:
        channels, factor = model.codec.channels, model.codec.factor
    else:  # meta build: trust the codec config only where its channels match the model's
        channels = cfg.model.latent_channels
        geo_channels, geo_factor = latent_geometry(cfg.model.codec)
        factor = geo_factor if geo_channels == channels else PAPER_LATENT_FACTOR
    side = cfg.data.resolution
    if side % factor:
        raise CostError(f"data.resolution={side} is not a multiple of the codec factor {factor}")
    return (batch, cfg.data.frames, channels, side // factor, side // factor)


def _inputs(model: torch.nn.Module, cfg: RunConfig, batch: int):
    """Random latents and COSTED_TASK's evaluation mask (interpolation: first and last frames given)."""
    device = _device(model)
    z = torch.randn(latent_shape(model, cfg, batch), device=device)
    # built on CPU: the task validates its mask with .any(), which meta tensors cannot answer
    mask = TASKS.build(COSTED_TASK).eval_mask(cfg.data.frames)
    return z, mask.unsqueeze(0).expand(batch, -1).contiguous().to(device)


# ----------------------------------------------------------------------------------------------
# One training step and one sampled video
# ----------------------------------------------------------------------------------------------
def train_step_fn(model: torch.nn.Module, cfg: RunConfig, batch: Optional[int] = None,
                  keep_grads: bool = False) -> Callable[[], None]:
    """A closure running forward + backward of one joint-stage training step.

    Gradients are freed after the step unless `keep_grads` (an optimiser step follows)."""
    z, mask = _inputs(model, cfg, batch or cfg.train.batch_size)

    def step() -> None:
        model.latent_losses(z, mask)["loss"].backward()
        if not keep_grads:
            model.zero_grad(set_to_none=True)

    return step


def sample_fn(model: torch.nn.Module, cfg: RunConfig) -> Callable[[], torch.Tensor]:
    """A closure sampling one COSTED_TASK video with that task's DDIM steps and guidance scale, as
    evaluation samples it (`model.diffusion.task_*` entries replace the defaults)."""
    z, mask = _inputs(model, cfg, 1)
    d = cfg.model.diffusion
    settings = task_sampling(d, COSTED_TASK)
    return lambda: model.sample_latents(z, mask, eta=d.eta, **settings)


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs of `fn()` as counted by FlopCounterMode (meta tensors work)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------
class LiveTensorBytes(TorchDispatchMode):
    """Track bytes of tensor storages created inside the mode that are still alive; keep the peak.

    Each op's outputs are counted once per storage and released when Python frees the storage,
    so this follows activations, saved tensors and gradients on any device, meta included.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live, self.peak, self._seen = 0, 0, set()

    def _release(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self._seen:
            return
        nbytes = storage.nbytes()
        self._seen.add(key)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key, nbytes)


class SavedTensorBytes:
    """Live and peak bytes of what autograd saves for backward (distinct storages, `params`' own left
    out): at the end of a forward, the activations a training step holds. Works on any device, meta
    included; with activation checkpointing the peak is the block inputs plus one recomputed block."""

    def __init__(self, params=()) -> None:
        self.own = {p.untyped_storage()._cdata for p in params}
        self.live, self.peak, self._seen = 0, 0, set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    def _release(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self.own and key not in self._seen:
            self._seen.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, storage.nbytes())
        return t


def peak_train_memory(model: torch.nn.Module, step: Callable[[], None]) -> Tuple[float, str]:
    """(MB, source) for one training step: CUDA max allocated, else params + peak live tensors."""
    device = _device(model)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20, "cuda_max_allocated"
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    with LiveTensorBytes() as tracker:
        step()
    return (params + tracker.peak) / 2 ** 20, "live_tensor_estimate"


# ----------------------------------------------------------------------------------------------
# Latency
# ----------------------------------------------------------------------------------------------
def best_latency(fn: Callable[[], Any], repeats: int = 3, device: Optional[torch.device] = None) -> float:
    """Fastest wall seconds of `fn()` over `repeats` runs after one warm-up run.

    The minimum, as `timeit` advises: other work on the machine (a sweep's other runs evaluating
    beside this one) only ever adds time, so the fastest run is the best estimate of the cost."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


# ----------------------------------------------------------------------------------------------
# The runner's entry point
# ----------------------------------------------------------------------------------------------
def run_cost(model: torch.nn.Module, cfg: RunConfig, repeats: int = 5) -> Dict[str, Any]:
    """Parameters, FLOPs, latency and peak memory of `model` under `cfg` (fields: module docstring).

    The model's training mode and stage are restored afterwards; it is run in the joint stage.
    """
    was_training, stage = model.training, model.stage
    device = _device(model)
    try:
        model.set_stage("joint")
        model.train()
        step = train_step_fn(model, cfg)
        out = {**_params(model), "flops_train_step": count_flops(step)}
        out["peak_mem_mb"], out["peak_mem_source"] = peak_train_memory(model, step)
        model.eval()
        sample = sample_fn(model, cfg)
        out["flops_sample"] = count_flops(sample)
        if device.type == "meta":
            out["latency_sample_s"] = None
        else:
            with timing_lock("latency"):  # a sweep's runs on this host take turns timing
                out["latency_sample_s"] = best_latency(sample, repeats, device)
    finally:
        model.set_stage(stage)
        model.train(was_training)
    return out


def _params(model: torch.nn.Module) -> Dict[str, int]:
    counts = model.num_params()
    return {"params_planner": counts["planner"], "params_generator": counts["generator"]}

