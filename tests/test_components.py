"""Mask schedules, noise schedules, RoPE, codecs and weights, each against its definition."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch

from mardini_bench.config import CodecConfig, MaskConfig, apply_overrides
from mardini_bench.registry import CODECS, MASK_SCHEDULES, NOISE_SCHEDULES
from mardini_bench.weights import KNOWN_WEIGHTS, WeightsError, resolve_weights
from models.attention import apply_rope, grid_positions, rope_angles
from models.masks import build_mask_schedule, fixed_mask


def masks(name: str, frames: int, batch: int = 256, step: int = 0, seed: int = 0, **fields) -> torch.Tensor:
    cfg = apply_overrides(MaskConfig(), {"name": name, **fields})
    return build_mask_schedule(cfg)(batch, frames, step=step, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", MASK_SCHEDULES.list())
@pytest.mark.parametrize("frames", [2, 5, 9, 17])
def test_every_mask_keeps_a_reference_and_a_masked_frame(name, frames):
    if name in ("fixed", "tasks") and frames == 2:  # references (0, -1) leave nothing to generate: refused
        with pytest.raises(ValueError, match="no masked or no reference frame|no given or no generated frame"):
            masks(name, frames)
        return
    m = masks(name, frames)
    assert m.shape == (256, frames) and m.dtype == torch.bool
    assert (~m).any(1).all() and m.any(1).all()


@pytest.mark.parametrize("name", MASK_SCHEDULES.list())
def test_masks_are_pure_functions_of_the_generator(name):
    assert torch.equal(masks(name, 9, seed=5), masks(name, 9, seed=5))
    state = torch.random.get_rng_state()
    masks(name, 9)
    assert torch.equal(state, torch.random.get_rng_state()), "mask code must not touch the global RNG"


def test_uniform_reference_count_covers_its_range():
    refs = (~masks("uniform", 17, batch=2000, min_ref=2, max_ref=5)).sum(1)
    assert set(refs.tolist()) == {2, 3, 4, 5}
    positions = (~masks("uniform", 9, batch=4000, min_ref=1, max_ref=1)).float().mean(0)
    assert torch.allclose(positions, torch.full((9,), 1 / 9), atol=0.03)  # positions are uniform


def test_truncnorm_masked_fraction_respects_its_minimum():
    frac = masks("truncnorm", 17, batch=4000).float().mean(1)
    assert frac.min() >= 0.7 - 1 / 17 and frac.max() <= 16 / 17
    assert frac.mean() > 0.8  # mass near 1 (mean 1.0, std 0.25, truncated at 0.7)


def test_fixed_and_curriculum():
    m = masks("fixed", 9, batch=3, ref_frames="[0,-1]")
    assert m[:, 0].logical_not().all() and m[:, -1].logical_not().all() and m[:, 1:-1].all()
    with pytest.raises(ValueError, match="outside a 9-frame clip"):
        fixed_mask((0, 9), 1, 9)
    stages = "[[100,0.5,0.6],[1e18,0.1,0.2]]"
    early = (~masks("curriculum", 20, step=10, stages=stages)).sum(1)
    late = (~masks("curriculum", 20, step=500, stages=stages)).sum(1)
    assert early.min() >= 10 and early.max() <= 12 and late.min() >= 2 and late.max() <= 4


@pytest.mark.parametrize("name", NOISE_SCHEDULES.list())
def test_noise_schedules_go_from_clean_to_noise(name):
    abar = NOISE_SCHEDULES.build(name, timesteps=1000).alphas_cumprod
    assert abar[0] > 0.98 and abar[-1] < 0.01 and (abar[1:] <= abar[:-1]).all()


def test_v_prediction_identities():
    sched = NOISE_SCHEDULES.build("cosine")
    x0, eps, t = torch.randn(4, 3, 8), torch.randn(4, 3, 8), torch.tensor([0, 10, 500, 999])
    x_t, v = sched.add_noise(x0, eps, t), sched.velocity(x0, eps, t)
    a, s = sched.alpha_sigma(t, x0)
    assert torch.allclose(a * x_t - s * v, x0, atol=1e-5) and torch.allclose(s * x_t + a * v, eps, atol=1e-5)


def test_rope_is_relative():
    """q.k after RoPE depends only on the position difference along every axis."""
    q, k = torch.randn(1, 1, 2, 24), torch.randn(1, 1, 2, 24)
    pos = torch.tensor([[1.0, 2.0, 3.0], [4.0, 7.0, 5.0]])
    shifted = pos + torch.tensor([5.0, -2.0, 11.0])
    dot = lambda p: (apply_rope(q, rope_angles(p[:1], 24, 100.0)) * apply_rope(k, rope_angles(p[1:], 24, 100.0))).sum()  # noqa: E731
    assert torch.allclose(dot(pos), dot(shifted), atol=1e-4)
    assert grid_positions(2, 3, 4).shape == (24, 3)


def test_pixel_codec_round_trips_exactly():
    codec = CODECS.build("pixel", CodecConfig(patch=4))
    video = torch.rand(2, 3, 3, 16, 24)
    z = codec.encode(video)
    assert z.shape == (2, 3, 48, 4, 6) and z.min() >= -1 and z.max() <= 1
    assert torch.allclose(codec.decode(z), video, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the codec factor 4"):
        codec.encode(torch.rand(1, 1, 3, 10, 16))


def test_taef2_matches_its_reference_round_trip(weights_dir, real_clips_dir):
    """Weight card reference: davis_blackswan frame 0, top-left 480x848 crop: latent mean 0.0637,
    std 0.8459, round-trip PSNR 32.16 dB (float32 CPU; tolerances as the card allows)."""
    from decord import VideoReader

    frame = VideoReader(str(real_clips_dir / "davis_blackswan.mp4"))[0].asnumpy()[:480, :848]
    x = torch.from_numpy(frame).permute(2, 0, 1)[None, None].float() / 255
    codec = CODECS.build("taef2", CodecConfig(name="taef2", weights=str(weights_dir)))
    with torch.no_grad():
        z = codec.encode(x)
        y = codec.decode(z)
    assert z.shape == (1, 1, 32, 60, 106)
    assert abs(z.mean().item() - 0.0637) < 0.002 and abs(z.std().item() - 0.8459) < 0.002
    psnr = 10 * math.log10(1 / ((y - x) ** 2).mean().item())
    assert abs(psnr - 32.16) < 0.05, psnr
    assert not any(p.requires_grad for p in codec.parameters())


def test_missing_weights_name_the_file_and_digest_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("MARDINI_BENCH_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(socket, "socket", no_network)
    with pytest.raises(WeightsError) as err:
        CODECS.build("taef2", CodecConfig(name="taef2"))
    message = str(err.value)
    assert "taef2_encoder.pth" in message and KNOWN_WEIGHTS["taef2_encoder.pth"].sha256 in message
    assert "MARDINI_BENCH_WEIGHTS" in message


def test_mismatched_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MARDINI_BENCH_WEIGHTS", raising=False)
    (tmp_path / "taef2_encoder.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="expected 10a4e1021e89"):
        resolve_weights("taef2_encoder.pth", tmp_path)


def test_weights_found_through_the_environment(weights_dir, monkeypatch):
    monkeypatch.setenv("MARDINI_BENCH_WEIGHTS", str(weights_dir))
    assert resolve_weights("taef2_decoder.pth") == weights_dir / "taef2_decoder.pth"
    assert np.isfinite(1.0)
