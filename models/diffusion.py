"""Noise schedules, v-prediction and DDIM sampling (paper §2.2 Eq. 1/3; design §2).

The paper fixes v-prediction, a loss on masked frames only, and DDIM (25 steps); it does not name
the schedule, so schedules are registry entries over discrete training timesteps:

    x_t = alpha_t * x_0 + sigma_t * eps,    v_t = alpha_t * eps - sigma_t * x_0
    x_0 = alpha_t * x_t - sigma_t * v,      eps = sigma_t * x_t + alpha_t * v

with alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t).
"""

from __future__ import annotations

import math
import functools
from typing import Callable, Dict, Optional, Tuple

import torch

from mardini_bench.registry import NOISE_SCHEDULES
from mardini_bench.runtime import draw


class NoiseSchedule:
    """Cumulative signal fraction abar_t over `len(abar)` discrete timesteps, t = 0 .. T-1."""

    def __init__(self, alphas_cumprod: torch.Tensor, name: str):
        self.name = name
        self.alphas_cumprod = alphas_cumprod.double()
        self.num_timesteps = len(alphas_cumprod)
        self._tables: Dict[str, torch.Tensor] = {}  # alphas_cumprod by device

    def table(self, device) -> torch.Tensor:
        """(T,) abar on `device`, copied there once: a training step reads it twice, a DDIM step twice,
        and a host-to-device copy each time would stall a GPU."""
        if torch.compiler.is_compiling():  # a traced graph holds its own constant
            return self.alphas_cumprod.to(device)
        key = str(device)
        if key not in self._tables:
            self._tables[key] = self.alphas_cumprod.to(device)
        return self._tables[key]

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor):
        """alpha_t, sigma_t for integer t (B,), shaped to broadcast against `like` (B, ...)."""
        abar = self.table(t.device)[t.long()].to(like.dtype)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return abar.sqrt().view(shape), (1 - abar).sqrt().view(shape)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x0)
        return a * x0 + s * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x0)
        return a * noise - s * x0

    def snr(self, device=None) -> torch.Tensor:
        """(T,) signal-to-noise ratio abar / (1 - abar) of unit-variance data at each timestep."""
        abar = self.alphas_cumprod if device is None else self.table(device)
        return abar / (1 - abar)


def shifted(schedule: NoiseSchedule, shift: float) -> NoiseSchedule:
    """SD3's timestep shift on any schedule: SNR(t) / shift^2 at every timestep (1 = unchanged).

    At low resolution neighbouring pixels are less redundant, so the same noise destroys more of the
    signal; shift < 1 keeps more timesteps at SNR > 1, where the model learns detail.
    """
    if shift <= 0:
        raise ValueError(f"model.diffusion.shift must be > 0, got {shift}")
    if shift == 1:
        return schedule
    snr = schedule.snr() / shift ** 2
    return NoiseSchedule(snr / (1 + snr), f"{schedule.name}@shift{shift:g}")


def _from_betas(betas: torch.Tensor, name: str) -> NoiseSchedule:
    return NoiseSchedule(torch.cumprod(1 - betas.double(), dim=0), name)


@NOISE_SCHEDULES.register
def cosine(timesteps: int = 1000, offset: float = 0.008) -> NoiseSchedule:
    """Nichol & Dhariwal (2021) cosine abar, betas clipped at 0.999 (used by VIDIM-style v-models)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return _from_betas(betas, "cosine")


@NOISE_SCHEDULES.register
def linear(timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> NoiseSchedule:
    """DDPM's linear betas, rescaled so any step count spans the same noise range."""
    scale = 1000 / timesteps
    return _from_betas(torch.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=torch.float64), "linear")


@NOISE_SCHEDULES.register
def scaled_linear(timesteps: int = 1000, beta_start: float = 8.5e-4, beta_end: float = 1.2e-2) -> NoiseSchedule:
    """Stable Diffusion's schedule: linear in sqrt(beta); common for latent video models."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    return _from_betas(betas, "scaled_linear")


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               clip_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """||M * (pred - target)||^2 averaged over masked frames' elements (paper Eq. 3).

    pred/target (B, T, ...); mask (B, T) True = frame counts in the loss; clip_weight (B,) scales
    each clip's frames (a timestep loss weight), None = 1.
    """
    err = (pred.float() - target.float()).pow(2).flatten(2).mean(-1)  # (B, T)
    weight = mask.float()
    if clip_weight is not None:
        err = err * clip_weight.float()[:, None]
    return (err * weight).sum() / weight.sum().clamp(min=1)


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B,) Min-SNR-gamma weight for v-prediction (Hang et al. 2023): min(SNR, gamma) / (SNR + 1)."""
    snr = schedule.snr(t.device)[t.long()].float()
    return snr.clamp(max=gamma) / (snr + 1)


def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> Tuple[int, ...]:
    """`steps` timesteps from T-1 down to 0, evenly spaced ("trailing"), so 1 step starts at pure noise."""
    if steps < 1:
        raise ValueError(f"DDIM needs at least 1 step, got {steps}")
    return _trailing(schedule.num_timesteps, steps)


@functools.lru_cache(maxsize=64)
def _trailing(num_timesteps: int, steps: int) -> Tuple[int, ...]:
    # planned once per (T, steps) on the host; sampling then makes each step's timesteps on its device
    return tuple(torch.linspace(num_timesteps - 1, 0, steps).round().long().unique_consecutive().tolist())


VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def ddim_sample(velocity_fn: VelocityFn, schedule: NoiseSchedule, noise: torch.Tensor, steps: int,
                eta: float = 0.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DDIM (Song et al. 2021) with a v-prediction model and any number of steps.

    `velocity_fn(x_t, t)` returns v for (B, ...) inputs and integer t (B,). Returns x_0.
    """
    ts = ddim_timesteps(schedule, steps)  # host integers: each step's (B,) is made on the device
    x = noise
    B = noise.shape[0]
    for i, t in enumerate(ts):
        t_b = torch.full((B,), t, dtype=torch.long, device=noise.device)
        a, s = schedule.alpha_sigma(t_b, x)
        v = velocity_fn(x, t_b).to(x.dtype)
        x0, eps = a * x - s * v, s * x + a * v
        if i + 1 == len(ts):
            x = x0
            break
        a_prev, s_prev = schedule.alpha_sigma(torch.full((B,), ts[i + 1], dtype=torch.long, device=noise.device), x)
        # eta = 0: deterministic DDIM; eta = 1: DDPM-like ancestral noise
        sigma = eta * (s_prev / s) * (1 - (a / a_prev) ** 2).clamp(min=0).sqrt()
        direction = (s_prev ** 2 - sigma ** 2).clamp(min=0).sqrt() * eps
        x = a_prev * x0 + direction
        if eta > 0:
            x = x + sigma * draw(torch.randn, x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


def guided(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on the planning signal: v_u + s (v_c - v_u)."""
    return v_uncond + scale * (v_cond - v_uncond)
