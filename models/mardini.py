"""MarDini: planner P + generator G + diffusion + codec (paper §2, Fig. 2).

Training (Eq. 3): both networks see the same clip at two resolutions. P gets the latent pooled by
`planner.downsample` with masked frames replaced by [MASK]; G gets the full-resolution latent with
noise on the same masked frames and clean reference frames; the v-prediction loss covers masked
frames only. Inference: P runs *once* per clip (notes §1.1), then G denoises all masked frames
jointly with DDIM, optionally with classifier-free guidance on the planning signal.

Stages (`set_stage`, Fig. 4): `generator_warmup` (G alone with Z_uncond, Eq. 1), `planner_warmup`
(P alone, masked reconstruction through the projection head, Eq. 2), `joint` and `joint_task`
(Eq. 3, gradients into both; the projection head is frozen, as the paper removes it).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mardini_bench.config import ModelConfig
from mardini_bench.registry import CODECS, GENERATORS, NOISE_SCHEDULES, PLANNERS
from models.diffusion import ddim_sample, guided, masked_mse
from models.planner import downsample_latents

STAGES = ("generator_warmup", "planner_warmup", "joint", "joint_task")


def _randn(shape, generator: Optional[torch.Generator], device, dtype=torch.float32) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


class MarDini(nn.Module):
    """One model for interpolation, image-to-video and expansion: the mask decides the task."""

    def __init__(self, cfg: ModelConfig, build_codec: bool = True):
        super().__init__()
        self.cfg = cfg
        self.codec = CODECS.build(cfg.codec.name, cfg.codec) if build_codec else None
        channels = self.codec.channels if self.codec is not None else cfg.latent_channels
        self.planner = PLANNERS.build(cfg.planner.name, cfg.planner, channels)
        self.generator = GENERATORS.build(cfg.generator.name, cfg.generator, channels, cfg.planner.dim)
        if self.planner is None and self.generator is None:
            raise ValueError("planner.name=none and generator.name=none leave no model to train")
        if self.generator is None and self.planner.recon_head is None:
            raise ValueError("generator.name=none (MAR-only) needs planner.recon_head=true to predict frames")
        self.schedule = NOISE_SCHEDULES.build(cfg.diffusion.schedule, timesteps=cfg.diffusion.train_timesteps)
        self.stage = "joint"
        self.set_stage("joint")

    # -- latents ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [0, 1] -> normalised latents (B, T, C, h, w)."""
        z = self.codec.encode(video.float())
        return (z - self.cfg.codec.shift) * self.cfg.codec.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(z.float() / self.cfg.codec.scale + self.cfg.codec.shift)

    def set_stage(self, stage: str) -> None:
        """Freeze what a training stage does not train (paper Fig. 4)."""
        if stage not in STAGES:
            raise ValueError(f"unknown training stage {stage!r}; valid: {', '.join(STAGES)}")
        self.stage = stage
        mar_only = self.generator is None
        if self.planner is not None:
            self.planner.requires_grad_(stage != "generator_warmup" or mar_only)
            if self.planner.recon_head is not None:
                self.planner.recon_head.requires_grad_(stage == "planner_warmup" or mar_only)
        if self.generator is not None:
            self.generator.requires_grad_(stage != "planner_warmup")

    # -- planning -----------------------------------------------------------------------------
    def plan(self, z: torch.Tensor, mask: torch.Tensor):
        """Planning signal (B, T, h*w, Dp), its grid (h, w), and P's reconstruction of Z_low."""
        z_low = downsample_latents(z, self.cfg.planner.downsample)
        h, w = z_low.shape[-2:]
        if self.planner is None:  # DM-only: Z_uncond stands in for every planning token
            shape = (z.shape[0], z.shape[1], h * w, self.cfg.planner.dim)
            return self.generator.unconditional_shaped(shape, z.dtype), (h, w), None, z_low
        signal, recon = self.planner(z_low, mask)
        return signal, (h, w), recon, z_low

    def _drop_condition(self, signal: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Replace Z_cond by Z_uncond per clip with prob. cfg_drop_prob (paper §2.2: 1/10)."""
        p = self.cfg.generator.cfg_drop_prob
        if p <= 0 or self.planner is None:
            return signal
        drop = torch.rand(signal.shape[0], generator=generator,
                          device=generator.device if generator is not None else signal.device) < p
        return torch.where(drop.to(signal.device)[:, None, None, None], self.generator.unconditional(signal), signal)

    # -- training -----------------------------------------------------------------------------
    def training_losses(self, video: torch.Tensor, mask: torch.Tensor,
                        generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """Loss for one batch of clips (B, T, 3, H, W) in [0, 1]; mask (B, T) True = masked."""
        return self.latent_losses(self.encode(video), mask, generator)

    def latent_losses(self, z: torch.Tensor, mask: torch.Tensor,
                      generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        signal, hw, recon, z_low = self.plan(z, mask)
        if self.generator is None or self.stage == "planner_warmup":
            loss = masked_mse(recon, z_low, mask)  # Eq. 2: reconstruct masked frames of Z_low
            return {"loss": loss, "recon_loss": loss.detach()}
        if self.stage == "generator_warmup":
            signal = self.generator.unconditional(signal)  # Eq. 1: G alone, with Z_uncond
        elif self.training:
            signal = self._drop_condition(signal, generator)
        B = z.shape[0]
        t = torch.randint(0, self.schedule.num_timesteps, (B,), generator=generator,
                          device=generator.device if generator is not None else z.device).to(z.device)
        noise = _randn(z.shape, generator, z.device, z.dtype)
        x_t = torch.where(mask[:, :, None, None, None], self.schedule.add_noise(z, noise, t), z)
        v_pred = self.generator(x_t, t, signal, hw, mask)
        loss = masked_mse(v_pred, self.schedule.velocity(z, noise, t), mask)  # Eq. 3
        return {"loss": loss, "diffusion_loss": loss.detach()}

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, video: torch.Tensor, mask: torch.Tensor, steps: Optional[int] = None,
               cfg_scale: Optional[float] = None, eta: Optional[float] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Generate the masked frames of `video` (B, T, 3, H, W); reference frames are returned as given."""
        z = self.sample_latents(self.encode(video), mask, steps, cfg_scale, eta, generator)
        out = self.decode(z)
        return torch.where(mask[:, :, None, None, None], out, video.float())

    @torch.no_grad()
    def sample_latents(self, z_ref: torch.Tensor, mask: torch.Tensor, steps: Optional[int] = None,
                       cfg_scale: Optional[float] = None, eta: Optional[float] = None,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
        d = self.cfg.diffusion
        steps = d.sample_steps if steps is None else steps
        cfg_scale = d.cfg_scale if cfg_scale is None else cfg_scale
        eta = d.eta if eta is None else eta
        m = mask[:, :, None, None, None]
        signal, hw, recon, _ = self.plan(z_ref, mask)  # the planner runs once per clip
        if self.generator is None:  # MAR-only: upsample P's low-res reconstruction
            up = F.interpolate(recon.flatten(0, 1), size=z_ref.shape[-2:], mode="nearest").unflatten(0, recon.shape[:2])
            return torch.where(m, up, z_ref)
        uncond = self.generator.unconditional(signal)
        guide = cfg_scale != 1.0 and self.planner is not None

        def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_in = torch.where(m, x_t, z_ref)  # references stay clean at every step
            if not guide:
                return self.generator(x_in, t, signal, hw, mask)
            v = self.generator(torch.cat((x_in, x_in)), torch.cat((t, t)), torch.cat((signal, uncond)),
                               hw, torch.cat((mask, mask)))
            return guided(*v.chunk(2), cfg_scale)

        noise = _randn(z_ref.shape, generator, z_ref.device, z_ref.dtype)
        z = ddim_sample(velocity, self.schedule, noise, steps, eta, generator)
        return torch.where(m, z, z_ref)

    def num_params(self) -> Dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        return {"planner": count(self.planner), "generator": count(self.generator)}
