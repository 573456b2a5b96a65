"""Latent codecs: video frames (B, T, 3, H, W) in [0, 1] <-> latents (B, T, C, H/f, W/f).

MarDini encodes frames one by one with an internal 16-channel, 8x VAE (paper §2.1) that was never
released (design §1.2), so the codec is a swappable component:

    pixel   identity + patchify (space-to-depth); no weights, the CPU default
    taef2   TAEF2, a pretrained tiny autoencoder for the FLUX.2 latent space (32 channels, 8x),
            loaded from an explicit path / $MARDINI_BENCH_WEIGHTS / the cache, sha256-verified

Codecs are frozen: they are not trained with the model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mardini_bench.config import CodecConfig
from mardini_bench.registry import CODECS
from mardini_bench.weights import resolve_weights


class Codec(nn.Module):
    """Frame-wise codec interface: `channels` latent channels at 1/`factor` spatial size."""

    channels: int
    factor: int

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, C, h, w)
        raise NotImplementedError

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:  # (N, C, h, w) -> (N, 3, H, W)
        raise NotImplementedError

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        B, T, _, H, W = video.shape
        if H % self.factor or W % self.factor:
            raise ValueError(f"frame size {H}x{W} must be a multiple of the codec factor {self.factor}")
        return self.encode_frames(video.flatten(0, 1)).unflatten(0, (B, T))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        B, T = z.shape[:2]
        return self.decode_frames(z.flatten(0, 1)).unflatten(0, (B, T)).clamp(0, 1)


class PixelCodec(Codec):
    """[0,1] -> [-1,1] then space-to-depth by `patch`: (3, H, W) -> (3 p^2, H/p, W/p)."""

    def __init__(self, patch: int):
        super().__init__()
        self.factor, self.channels = patch, 3 * patch * patch

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x * 2 - 1, self.factor)

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        return (F.pixel_shuffle(z, self.factor) + 1) / 2


# -- TAEF2 (architecture from the weight card: flat nn.Sequential, ReLU everywhere) ---------------
def _conv(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class _ResBlock(nn.Module):
    """ReLU(conv-relu-conv-relu-conv(x) + x); the GN variant first adds a GroupNorm'd 1x1 branch."""

    def __init__(self, ch: int = 64, pooled: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(ch, ch), nn.ReLU(), _conv(ch, ch), nn.ReLU(), _conv(ch, ch))
        self.pool = nn.Sequential(nn.Conv2d(ch, 4 * ch, 1, bias=False), nn.GroupNorm(4, 4 * ch), nn.ReLU(),
                                  nn.Conv2d(4 * ch, ch, 1, bias=False)) if pooled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:  # the only whole-image statistics in the network
            x = x + self.pool(x)
        return F.relu(self.conv(x) + x)


class _SoftClamp(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 3 * torch.tanh(z / 3)


def taef2_encoder(latent: int = 32) -> nn.Sequential:
    R = _ResBlock
    return nn.Sequential(_conv(3, 64), R(), _conv(64, 64, 2, False), R(), R(), R(), _conv(64, 64, 2, False),
                         R(), R(), R(), _conv(64, 64, 2, False), R(pooled=True), R(pooled=True),
                         R(pooled=True), _conv(64, latent))


def taef2_decoder(latent: int = 32) -> nn.Sequential:
    R, up = _ResBlock, (lambda: nn.Upsample(scale_factor=2))
    return nn.Sequential(_SoftClamp(), _conv(latent, 64), nn.ReLU(), R(pooled=True), R(pooled=True),
                         R(pooled=True), up(), _conv(64, 64, bias=False), R(), R(), R(), up(),
                         _conv(64, 64, bias=False), R(), R(), R(), up(), _conv(64, 64, bias=False), R(),
                         _conv(64, 3))


class TAEF2Codec(Codec):
    """Pretrained tiny FLUX.2 autoencoder: [0,1] RGB <-> 32-channel latents at 1/8 size."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        self.factor, self.channels = 8, 32
        self.encoder, self.decoder = taef2_encoder(), taef2_decoder()
        for module, name in ((self.encoder, "taef2_encoder.pth"), (self.decoder, "taef2_decoder.pth")):
            state = torch.load(resolve_weights(name, weights), map_location="cpu", weights_only=True)
            module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "TAEF2Codec":
        return super().train(False)  # frozen, whatever the parent module's mode

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.float())

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.float())


@CODECS.register
def pixel(cfg: CodecConfig) -> Codec:
    return PixelCodec(cfg.patch)


@CODECS.register
def taef2(cfg: CodecConfig) -> Codec:
    return TAEF2Codec(cfg.weights)
