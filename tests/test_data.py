"""Data path: synthetic clips, real clips through decord, and the errors bad files give."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch

from mardini_bench.config import DataConfig
from mardini_bench.data import VideoFolderDataset, VideoReadError, build_dataset, probe_video, read_video
from mardini_bench.data.folder import FrameFolderDataset


def test_synthetic_clips_are_deterministic_moving_and_split_disjoint():
    cfg = DataConfig(frames=9, resolution=32)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    a = train[3]
    assert a.shape == (9, 3, 32, 32) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, build_dataset(cfg, "train")[3])
    assert (a[1:] - a[:-1]).abs().mean() > 0.005, "clips must move"
    assert not torch.equal(train[0], val[0])
    hard = build_dataset(DataConfig(difficulty=1.0), "train")[3]
    assert (hard[1:] - hard[:-1]).abs().mean() > (a[1:] - a[:-1]).abs().mean() * 0.5
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset(cfg, "dev")


def test_every_real_clip_loads_with_its_manifest_geometry(real_clips_dir):
    rows = list(csv.DictReader(open(real_clips_dir / "manifest.csv")))
    assert len(rows) == 22
    for row in rows:
        info = probe_video(real_clips_dir / row["filename"])
        assert (info.frames, info.height, info.width) == (int(row["frames"]), int(row["height"]), int(row["width"]))
        assert abs(info.fps - float(row["fps"])) < 0.01
    ds = VideoFolderDataset(DataConfig(frames=9, resolution=32), real_clips_dir)
    assert len(ds) == 22
    clip = ds[0]
    assert clip.shape == (9, 3, 32, 32) and 0 <= clip.min() <= clip.max() <= 1


@pytest.fixture()
def bad_folder(tmp_path, real_clips_dir):
    shutil.copy(real_clips_dir / "davis_judo.mp4", tmp_path / "good.mp4")
    data = (real_clips_dir / "davis_bear.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 20])
    (tmp_path / "random.mp4").write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).numpy().tobytes())
    return tmp_path


def test_bad_files_give_named_errors_and_skip_counts_them(bad_folder):
    for name in ("truncated.mp4", "random.mp4"):
        with pytest.raises(VideoReadError, match=f"{name}: corrupt or truncated"):
            read_video(bad_folder / name)
    with pytest.raises(VideoReadError, match="random.mp4|truncated.mp4"):
        VideoFolderDataset(DataConfig(frames=9), bad_folder)
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = VideoFolderDataset(DataConfig(frames=9, resolution=16), bad_folder, on_error="skip")
    assert len(ds) == 1 and len(ds.skipped) == 2 and ds[0].shape == (9, 3, 16, 16)


def test_other_bad_inputs(tmp_path, real_clips_dir):
    with pytest.raises(VideoReadError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(VideoReadError, match="unsupported extension '.gif'"):
        probe_video(tmp_path / "clip.gif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="empty folder"):
        VideoFolderDataset(DataConfig(), tmp_path / "empty")
    short = tmp_path / "short"
    short.mkdir()
    shutil.copy(real_clips_dir / "davis_judo.mp4", short / "judo.mp4")  # 16 frames
    with pytest.raises(VideoReadError, match="16 frames, shorter than a 17-frame clip"):
        VideoFolderDataset(DataConfig(frames=17), short)


def test_frame_folder_dataset(tmp_path):
    from PIL import Image

    for seq, n in (("a", 10), ("b", 9)):
        (tmp_path / seq).mkdir()
        for i in range(n):
            Image.new("RGB", (40, 30), (i * 20, 0, 0)).save(tmp_path / seq / f"{i:05d}.jpg")
    ds = FrameFolderDataset(DataConfig(frames=9, resolution=16), tmp_path)
    assert len(ds) == 2 and ds[0].shape == (9, 3, 16, 16)


def test_info_cli(real_clips_dir, bad_folder):
    ok = subprocess.run([sys.executable, "-m", "mardini_bench.data", "info", str(real_clips_dir), "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)
    assert len(rows) == 22 and all({"frames", "fps", "height", "width"} <= set(r) for r in rows)
    bad = subprocess.run([sys.executable, "-m", "mardini_bench.data", "info", str(bad_folder), "--json"],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    errors = [r for r in json.loads(bad.stdout) if "error" in r]
    assert len(errors) == 2 and all(r["path"].split("/")[-1] in r["error"] for r in errors)
