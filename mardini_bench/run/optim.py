"""Training state held flat: weights, gradients, AdamW moments and the EMA as a few contiguous tensors.

    flat = FlatParameters(model.parameters())      # every parameter becomes a view of flat.data
    opt = FlatAdamW(flat, lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    ema = FlatEMA(model, flat, decay=0.999)
    ...backward...; opt.step(skip=~finite); ema.update(finite); flat.zero_grad()

`small` has 212 parameter tensors. Updated one at a time, AdamW, gradient clipping and the EMA cost
about 7,700 aten ops a step on the CPU (and as many kernel launches on a GPU), more than the forward
pass. Bound as views of one buffer (Megatron-LM's contiguous gradient buffer, applied to the weights
too), each is a handful of ops over one tensor. AdamW is torch's fused kernel (`torch.optim.adamw.adamw`
with `fused=True`, on CPU and CUDA) on each contiguous run of trainable parameters, the EMA is
`AveragedModel(model, multi_avg_fn=<warm-up lerp>, use_buffers=True)`'s update; tests check both
against torch's per-parameter classes. The checkpoint formats are theirs, so runs resume across the
change (the fused kernel rounds differently from the per-parameter loop: a run trained before it
resumes on a curve equal to rounding, not to the bit).

A step whose loss or gradient norm is not finite is skipped without reading the flag on the host:
the fused kernel takes it as `found_inf` (as `GradScaler` does: nothing moves, step counts included),
and the EMA multiplies its weight by it. So the training loop needs no host sync per step.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.optim.adamw import adamw

Segment = Tuple[int, int, int, int]  # (first parameter, end parameter, first element, end element)
# The gradient norm is the norm of the norms of chunks of this many elements: one float32 reduction over
# millions of values drifts (2e-4 relative on 2.6M values on a CPU), chunked it stays within 1e-7.
NORM_CHUNK = 4096


class FlatParameters:
    """Parameters rebound as views of one flat buffer (`data`), their gradients as views of another
    (`grad`). Autograd accumulates into an existing `.grad` in place, so the views stay bound; never
    set them to None (`zero_grad()` zeroes the buffer instead). The buffers are padded with zeros to a
    whole number of NORM_CHUNK elements."""

    def __init__(self, params: Iterable[nn.Parameter], grads: bool = True) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("FlatParameters needs at least one parameter")
        first = self.params[0]
        odd = [i for i, p in enumerate(self.params) if (p.dtype, p.device) != (first.dtype, first.device)]
        if odd:
            raise ValueError(f"parameters {odd} differ in dtype or device from the first "
                             f"({first.dtype}, {first.device}); one flat buffer holds one kind")
        self.bounds: List[Tuple[int, int]] = []
        offset = 0
        for p in self.params:
            self.bounds.append((offset, offset + p.numel()))
            offset += p.numel()
        padded = -(-offset // NORM_CHUNK) * NORM_CHUNK
        self.data = torch.zeros(padded, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data) if grads else None
        with torch.no_grad():
            for p, (a, b) in zip(self.params, self.bounds):
                self.data[a:b].copy_(p.detach().reshape(-1))
                p.data = self.data[a:b].view_as(p)
                p.grad = self.grad[a:b].view_as(p) if grads else None

    def zero_grad(self) -> None:
        self.grad.zero_()

    def grad_norm(self) -> torch.Tensor:
        """The global L2 norm of the gradients (0-d), accumulated chunk by chunk (see NORM_CHUNK)."""
        return torch.linalg.vector_norm(torch.linalg.vector_norm(self.grad.view(-1, NORM_CHUNK), dim=1))

    def segments(self) -> List[Segment]:
        """Maximal runs of consecutive parameters that require grad, as parameter and element ranges."""
        runs: List[Segment] = []
        for i, p in enumerate(self.params):
            if not p.requires_grad:
                continue
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1, runs[-1][2], self.bounds[i][1])
            else:
                runs.append((i, i + 1, *self.bounds[i]))
        return runs


class FlatAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) over a `FlatParameters`: one update per run of trainable parameters
    that have trained the same steps (so they share one step count and one bias correction).

    A parameter that does not require grad in the current stage is left alone, state and all, as torch's
    AdamW leaves a parameter without a gradient; when it trains again it resumes its own step count."""

    def __init__(self, flat: FlatParameters, lr: float, betas: Tuple[float, float], weight_decay: float,
                 eps: float = 1e-8) -> None:
        super().__init__([flat.data], dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.flat = flat
        self.exp_avg = torch.zeros_like(flat.data)
        self.exp_avg_sq = torch.zeros_like(flat.data)
        n = len(flat.params)
        self.steps = torch.zeros(n, dtype=torch.float32, device=flat.data.device)  # per parameter
        # Which stretches of training each parameter took part in: equal histories, equal step counts.
        self.history: List[Tuple[int, ...]] = [()] * n
        self._phase, self._active, self._runs = 0, None, []

    def _runs_now(self) -> List[Segment]:
        """The segments to update this step; a change of the trainable set starts a new phase."""
        active = tuple(p.requires_grad for p in self.flat.params)
        if active != self._active:
            self._phase += 1
            self.history = [h + (self._phase,) if a else h for h, a in zip(self.history, active)]
            self._active = active
            self._runs = [piece for run in self.flat.segments() for piece in self._split_by_history(run)]
        return self._runs

    def _split_by_history(self, run: Segment) -> List[Segment]:
        first, end, _, _ = run
        pieces, start = [], first
        for i in range(first + 1, end + 1):
            if i == end or self.history[i] != self.history[start]:
                pieces.append((start, i, self.flat.bounds[start][0], self.flat.bounds[i - 1][1]))
                start = i
        return pieces

    @torch.no_grad()
    def step(self, closure: Any = None, skip: Optional[torch.Tensor] = None) -> None:
        """One AdamW update of the trainable parameters. `skip` (a 0-d bool tensor) makes it a no-op on
        the device when true, step counts included, without a host read."""
        if closure is not None:
            raise ValueError("FlatAdamW.step takes no closure")
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        for first, end, a, b in self._runs_now():
            count = self.steps[first:first + 1]  # incremented in place by adamw()
            adamw([self.flat.data[a:b]], [self.flat.grad[a:b]], [self.exp_avg[a:b]], [self.exp_avg_sq[a:b]], [],
                  [count], foreach=False, fused=True, found_inf=None if skip is None else skip.float(),
                  amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                  eps=group["eps"], maximize=False)
            if end - first > 1:
                self.steps[first + 1:end].copy_(count.expand(end - first - 1))

    # -- torch.optim.AdamW's checkpoint format, one entry per parameter ---------------------------
    def state_dict(self) -> Dict[str, Any]:
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        state = {}
        for i, (a, b) in enumerate(self.flat.bounds):
            if self.history[i]:  # has trained at least once: torch would hold state for it
                shape = self.flat.params[i].shape
                state[i] = {"step": self.steps[i].detach().clone().cpu(),
                            "exp_avg": self.exp_avg[a:b].view(shape), "exp_avg_sq": self.exp_avg_sq[a:b].view(shape)}
        params = list(range(len(self.flat.params)))
        return {"state": state, "param_groups": [{**group, "amsgrad": False, "maximize": False, "foreach": None,
                                                  "capturable": False, "differentiable": False,
                                                  "fused": True, "params": params}]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load what `state_dict()` or a per-parameter `torch.optim.AdamW` over the same parameters wrote."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.flat.params):
            raise ValueError(f"optimiser state for {sum(len(g['params']) for g in groups)} parameters in "
                             f"{len(groups)} group(s); this model has {len(self.flat.params)} in one")
        for key in ("lr", "betas", "eps", "weight_decay", "initial_lr"):
            if key in groups[0]:
                self.param_groups[0][key] = tuple(groups[0][key]) if key == "betas" else groups[0][key]
        states = {int(k): v for k, v in state_dict["state"].items()}
        with torch.no_grad():
            self.exp_avg.zero_(), self.exp_avg_sq.zero_(), self.steps.zero_()
            for i, (a, b) in enumerate(self.flat.bounds):
                if i in states:
                    s = states[i]
                    self.exp_avg[a:b].copy_(s["exp_avg"].reshape(-1))
                    self.exp_avg_sq[a:b].copy_(s["exp_avg_sq"].reshape(-1))
                    self.steps[i] = float(s["step"])
        # Parameters with equal step counts are taken to have trained together (the only way a run reaches
        # them); a count is a history here, so the next step's grouping keeps every count exact.
        counts = [float(states[i]["step"]) if i in states else None for i in range(len(self.flat.params))]
        self.history = [() if c is None else (-1, c) for c in counts]
        self._phase, self._active = 0, None


class FlatEMA:
    """EMA of a model's weights and buffers over its `FlatParameters`: `AveragedModel(model,
    multi_avg_fn=<lerp by 1 - ema_decay_at(decay, n)>, use_buffers=True)` in a few ops, with the same
    `state_dict` (`n_averaged`, `module.<name>`). `module` is the averaged copy that gets evaluated.

    The weight of update n is 1 at n = 0 (a copy: lerp by 1 is exact) and 1 - min(decay, (1+n)/(10+n))
    after, computed on the device; a step flagged non-finite multiplies it by 0 and is not counted."""

    def __init__(self, model: nn.Module, flat: FlatParameters, decay: float) -> None:
        self.decay, self.source = decay, flat
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.grad = None
            p.requires_grad_(False)
        self.flat = FlatParameters(self.module.parameters(), grads=False)
        self.buffers = [b for b in self.module.buffers()]
        self.source_buffers = [b for b in model.buffers()]
        self.n_averaged = torch.zeros((), dtype=torch.long, device=flat.data.device)

    def weight(self) -> torch.Tensor:
        """The lerp weight of the next update (0-d, float64, on the device)."""
        n = self.n_averaged.double()
        return torch.where(self.n_averaged == 0, 1.0, 1.0 - torch.clamp((1 + n) / (10 + n), max=self.decay))

    @torch.no_grad()
    def update(self, finite: Optional[torch.Tensor] = None) -> None:
        weight = self.weight()
        if finite is not None:
            weight = weight * finite
            self.n_averaged += finite.long()
        else:
            self.n_averaged += 1
        weight = weight.to(self.flat.data.dtype)
        self.flat.data.lerp_(self.source.data, weight)
        for mine, theirs in zip(self.buffers, self.source_buffers):
            if mine.is_floating_point():
                mine.lerp_(theirs, weight.to(mine.dtype))
            else:
                mine.copy_(theirs)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"n_averaged": self.n_averaged.clone(),
                **{f"module.{k}": v for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict({k[len("module."):]: v for k, v in state.items() if k.startswith("module.")})
        self.n_averaged.copy_(state["n_averaged"])


def ema_weights(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The averaged model's own state dict out of an EMA checkpoint entry (`FlatEMA` or `AveragedModel`)."""
    return {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}


__all__ = ["FlatParameters", "FlatAdamW", "FlatEMA", "ema_weights"]
