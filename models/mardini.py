"""MarDini: planner P + generator G + diffusion + codec (paper §2, Fig. 2).

Training (Eq. 3): both networks see the same clip at two resolutions. P gets the latents of the
frames downsampled by `planner.downsample` (antialiased, §2.1) with masked frames replaced by [MASK]; G gets the full-resolution latent with
noise on the same masked frames and clean reference frames; the v-prediction loss covers masked
frames only. Inference: P runs *once* per clip (design §1.1), then G denoises all masked frames
jointly with DDIM, optionally with classifier-free guidance on the planning signal.

Stages (`set_stage`, Fig. 4): `generator_warmup` (G alone with Z_uncond, Eq. 1), `planner_warmup`
(P alone, masked reconstruction through the projection head, Eq. 2), `joint` and `joint_task`
(Eq. 3, gradients into both; the projection head is frozen, as the paper removes it).
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mardini_bench.config import PRIOR_BASELINES, STAGES, ConfigError, ModelConfig
from mardini_bench.registry import BASELINES, CODECS, GENERATORS, NOISE_SCHEDULES, PLANNERS
from mardini_bench.runtime import draw
from models.diffusion import ddim_sample, guided, masked_mse, min_snr_weight, shifted
from models.planner import downsample_latents

Baseline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def prior_baseline(name: str) -> Optional[Baseline]:
    """The training-free baseline behind `diffusion.prior=name` (a `BASELINES` entry); None for "none"."""
    if name == "none":
        return None
    if name not in PRIOR_BASELINES:
        raise ConfigError(f"diffusion.prior: {name!r} is not one of none, {', '.join(PRIOR_BASELINES)}")
    return BASELINES.get(PRIOR_BASELINES[name])




class TrainingDraws(NamedTuple):
    """One training step's randomness (`MarDini.draw_training`); None where the stage draws none."""

    t: Optional[torch.Tensor]  # (B,) timesteps
    noise: Optional[torch.Tensor]  # like the latents
    uncond: Optional[torch.Tensor]  # (B,) bool: clips that read Z_uncond (CFG dropout, generator warm-up)


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
        schedule = NOISE_SCHEDULES.build(cfg.diffusion.schedule, timesteps=cfg.diffusion.train_timesteps)
        self.schedule = shifted(schedule, cfg.diffusion.shift)
        self.prior_fn = prior_baseline(cfg.diffusion.prior)
        # Latent normalisation (z - shift) * scale as buffers: they travel with checkpoints and the EMA
        # copy, so a run whose statistics were estimated at its start evaluates with the same numbers.
        self.register_buffer("latent_shift", torch.tensor(float(cfg.codec.shift)))
        self.register_buffer("latent_scale", torch.tensor(float(cfg.codec.scale)))
        self.stage = "joint"
        self.set_stage("joint")

    # -- latents ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [0, 1] -> normalised latents (B, T, C, h, w)."""
        z = self.codec.encode(video.float())
        return (z - self.latent_shift) * self.latent_scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(z.float() / self.latent_scale + self.latent_shift)

    @torch.no_grad()
    def encode_low(self, video: torch.Tensor) -> Optional[torch.Tensor]:
        """The planner's input (B, T, C, h', w'): latents of frames downsampled with antialiasing (§2.1:
        "low-resolution latents of low-resolution frames"). None under `planner.input=pooled`, where
        `plan` pools the full latent instead (aliased: fine detail folds into the coarse grid)."""
        factor = self.cfg.planner.downsample
        if self.cfg.planner.input == "pooled" or self.planner is None:
            return None
        if factor == 1:
            return self.encode(video)
        B, T, _, H, W = video.shape
        low = F.interpolate(video.flatten(0, 1).float(), size=(H // factor, W // factor), mode="bilinear",
                            antialias=True, align_corners=False).clamp(0, 1)
        return self.encode(low.unflatten(0, (B, T)))

    @torch.no_grad()
    def lift(self, z_low: torch.Tensor, size) -> torch.Tensor:
        """A planner-grid latent back to the generator's grid `size` (MAR-only sampling)."""
        if self.cfg.planner.input == "pooled" or self.codec is None:
            return F.interpolate(z_low.flatten(0, 1), size=size, mode="nearest").unflatten(0, z_low.shape[:2])
        frames = self.decode(z_low)  # (B, T, 3, h, w): the low-resolution frames it stands for
        H, W = size[0] * self.codec.factor, size[1] * self.codec.factor
        up = F.interpolate(frames.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False)
        return self.encode(up.unflatten(0, frames.shape[:2]).clamp(0, 1))

    def prior(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The guess the diffusion refines (B, T, C, h, w): zero under `diffusion.prior=none`, else a
        training-free baseline applied to the latents (references come back as themselves, so their
        residual is zero). Normalisation is affine and the guesses are convex combinations of frames,
        so with the pixel codec the guess is the baseline's own frame."""
        if self.prior_fn is None:
            return torch.zeros_like(z)
        return self.prior_fn(z, mask, validate=False)  # the caller's masks; a check would stall a GPU step

    def set_stage(self, stage: str) -> None:
        """Freeze what a training stage does not train (paper Fig. 4)."""
        if stage not in STAGES:
            raise ValueError(f"unknown training stage {stage!r}; valid: {', '.join(STAGES)}")
        self.stage = stage
        mar_only = self.generator is None
        if self.planner is not None:
            self.planner.requires_grad_(stage != "generator_warmup" or mar_only)
            if self.planner.recon_head is not None:
                aux = self.cfg.planner.recon_weight > 0 and stage != "generator_warmup"
                self.planner.recon_head.requires_grad_(stage == "planner_warmup" or mar_only or aux)
        if self.generator is not None:
            self.generator.requires_grad_(stage != "planner_warmup")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing per planner and generator block: backward recomputes each block's
        activations from its input, so a step keeps one block's activations instead of all of them."""
        for net in (self.planner, self.generator):
            if net is not None:
                net.grad_checkpointing = enable

    # -- planning -----------------------------------------------------------------------------
    def plan(self, z: torch.Tensor, mask: torch.Tensor, z_low: Optional[torch.Tensor] = None):
        """Planning signal (B, T, h*w, Dp), its grid (h, w), P's reconstruction of Z_low, and Z_low.

        `z_low` is `encode_low(video)`; None pools `z` (same shape: what cost accounting uses). Without a
        planner (DM-only) the signal is None: G reads Z_uncond for every planning token."""
        z_low = downsample_latents(z, self.cfg.planner.downsample) if z_low is None else z_low
        h, w = z_low.shape[-2:]
        if self.planner is None:
            return None, (h, w), None, z_low
        signal, recon = self.planner(z_low, mask)
        return signal, (h, w), recon, z_low

    def _drop_condition(self, batch: int, generator: Optional[torch.Generator],
                        device: torch.device) -> Optional[torch.Tensor]:
        """(B,) True where a clip's Z_cond is replaced by Z_uncond, with prob. cfg_drop_prob (paper §2.2: 1/10)."""
        p = self.cfg.generator.cfg_drop_prob
        if p <= 0 or self.planner is None:
            return None
        return draw(torch.rand, batch, generator=generator, device=device) < p

    # -- training -----------------------------------------------------------------------------
    def training_losses(self, video: torch.Tensor, mask: torch.Tensor,
                        generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """Loss for one batch of clips (B, T, 3, H, W) in [0, 1]; mask (B, T) True = masked."""
        return self.latent_losses(self.encode(video), mask, generator, self.encode_low(video))

    def latent_losses(self, z: torch.Tensor, mask: torch.Tensor, generator: Optional[torch.Generator] = None,
                      z_low: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """`losses` with this step's randomness drawn from `generator` (`draw_training`)."""
        return self.losses(z, mask, self.draw_training(z, generator), z_low)

    def draw_training(self, z: torch.Tensor, generator: Optional[torch.Generator] = None) -> "TrainingDraws":
        """The randomness of one training step on latents `z`, drawn before the loss (so a compiled loss is
        one graph): which clips read Z_uncond, then the timesteps, then the noise, from `generator`'s
        device. Nothing is drawn where the stage has no diffusion (planner_warmup, MAR-only)."""
        if self.generator is None or self.stage == "planner_warmup":
            return TrainingDraws(None, None, None)
        B = z.shape[0]
        uncond = None
        if self.stage == "generator_warmup":
            uncond = torch.ones(B, dtype=torch.bool, device=z.device)  # Eq. 1: G alone, with Z_uncond
        elif self.training:
            uncond = self._drop_condition(B, generator, z.device)
        t = draw(torch.randint, 0, self.schedule.num_timesteps, (B,), generator=generator, device=z.device)
        return TrainingDraws(t, draw(torch.randn, z.shape, generator=generator, device=z.device, dtype=z.dtype), uncond)

    def losses(self, z: torch.Tensor, mask: torch.Tensor, draws: "TrainingDraws",
               z_low: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Eq. 3 (and Eq. 2 where the stage trains the planner alone) for latents `z` and a step's `draws`:
        no randomness of its own, what `train.compile` compiles."""
        signal, hw, recon, z_low = self.plan(z, mask, z_low)
        if draws.t is None:
            loss = masked_mse(recon, z_low, mask)  # Eq. 2: reconstruct masked frames of Z_low
            return {"loss": loss, "recon_loss": loss.detach()}
        t, noise = draws.t, draws.noise
        # The diffusion runs on x0 = z - prior (= z under prior=none); G sees the guess plus noisy x0.
        guess = self.prior(z, mask)
        x0 = z - guess
        x_t = torch.where(mask[:, :, None, None, None], guess + self.schedule.add_noise(x0, noise, t), z)
        v_pred = self.generator(x_t, t, signal, hw, mask, draws.uncond)
        d = self.cfg.diffusion
        weight = min_snr_weight(self.schedule, t, d.min_snr_gamma) if d.loss_weight == "min_snr" else None
        loss = masked_mse(v_pred, self.schedule.velocity(x0, noise, t), mask, weight)  # Eq. 3
        out = {"diffusion_loss": loss.detach()}
        w = self.cfg.planner.recon_weight
        if w > 0 and recon is not None and self.stage != "generator_warmup":
            recon_loss = masked_mse(recon, z_low, mask)  # Eq. 2 beside Eq. 3: P learns to predict directly
            loss = loss + w * recon_loss
            out["recon_loss"] = recon_loss.detach()
        return {"loss": loss, **out}

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, video: torch.Tensor, mask: torch.Tensor, steps: Optional[int] = None,
               cfg_scale: Optional[float] = None, eta: Optional[float] = None,
               generator: Optional[torch.Generator] = None, sample_average: Optional[int] = None) -> torch.Tensor:
        """Generate the masked frames of `video` (B, T, 3, H, W); reference frames are returned as given."""
        z = self.sample_latents(self.encode(video), mask, steps, cfg_scale, eta, generator, self.encode_low(video),
                                sample_average)
        out = self.decode(z)
        return torch.where(mask[:, :, None, None, None], out, video.float())

    @torch.no_grad()
    def sample_latents(self, z_ref: torch.Tensor, mask: torch.Tensor, steps: Optional[int] = None,
                       cfg_scale: Optional[float] = None, eta: Optional[float] = None,
                       generator: Optional[torch.Generator] = None,
                       z_low: Optional[torch.Tensor] = None, sample_average: Optional[int] = None) -> torch.Tensor:
        d = self.cfg.diffusion
        steps = d.sample_steps if steps is None else steps
        cfg_scale = d.cfg_scale if cfg_scale is None else cfg_scale
        eta = d.eta if eta is None else eta
        sample_average = d.sample_average if sample_average is None else sample_average
        m = mask[:, :, None, None, None]
        signal, hw, recon, _ = self.plan(z_ref, mask, z_low)  # the planner runs once per clip
        if self.generator is None:  # MAR-only: upsample P's low-res reconstruction
            return torch.where(m, self.lift(recon, z_ref.shape[-2:]), z_ref)
        guide = cfg_scale != 1.0 and self.planner is not None
        if guide:  # one batch: the clips with their plan, then the same clips with Z_uncond
            B = z_ref.shape[0]
            signal2 = torch.cat((signal, signal))
            uncond = torch.arange(2 * B, device=z_ref.device) >= B
        guess = self.prior(z_ref, mask)  # DDIM runs on the residual from it (zero: the latent itself)

        def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_in = torch.where(m, guess + x_t, z_ref)  # references stay clean at every step
            if not guide:
                return self.generator(x_in, t, signal, hw, mask)
            v = self.generator(torch.cat((x_in, x_in)), torch.cat((t, t)), signal2, hw, torch.cat((mask, mask)),
                               uncond)
            return guided(*v.chunk(2), cfg_scale)

        # K > 1: the mean of K samples, a Monte-Carlo posterior mean (design §5); the planner ran once
        residual = 0
        for _ in range(sample_average):
            noise = draw(torch.randn, z_ref.shape, generator=generator, device=z_ref.device, dtype=z_ref.dtype)
            residual = residual + ddim_sample(velocity, self.schedule, noise, steps, eta, generator)
        z = guess + residual / sample_average
        return torch.where(m, z, z_ref)

    def num_params(self) -> Dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        return {"planner": count(self.planner), "generator": count(self.generator)}
