"""Data path: synthetic clips, real clips through decord, clip sampling, and the errors bad files give."""

import csv
import json
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mardini_bench.config import DataConfig
from mardini_bench.data import (FrameFolderDataset, VideoFolderDataset, VideoReadError, build_dataset, probe_video,
                                read_frames_folder, read_video)
from mardini_bench.data import video_io
from mardini_bench.data.folder import clip_indices, to_clip
from mardini_bench.registry import DATASETS


def motion(clip):
    return (clip[1:] - clip[:-1]).abs().mean().item()


# -- synthetic ---------------------------------------------------------------------------------------

def test_synthetic_clips_are_deterministic_moving_and_split_disjoint():
    cfg = DataConfig(frames=9, resolution=32)
    train, val, test = (build_dataset(cfg, s) for s in ("train", "val", "test"))
    a = train[3]
    assert a.shape == (9, 3, 32, 32) and a.dtype == torch.float32 and a.is_contiguous()
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, build_dataset(cfg, "train")[3])  # same seed, same clip
    assert not torch.equal(a, build_dataset(cfg, "train", seed=1)[3])
    assert motion(a) > 0.005, "clips must move"
    firsts = [train[0], val[0], test[0]]
    assert not any(torch.equal(x, y) for i, x in enumerate(firsts) for y in firsts[i + 1:])
    assert len(train) == cfg.num_train and len(val) == cfg.num_eval
    with pytest.raises(IndexError):
        train[cfg.num_train]


def test_synthetic_has_temporal_structure():
    clips = [build_dataset(DataConfig(frames=16, resolution=32), "train")[i] for i in range(8)]
    near = np.mean([(c[1:] - c[:-1]).abs().mean() for c in clips])
    far = np.mean([(c[8:] - c[:-8]).abs().mean() for c in clips])
    assert far > 1.5 * near  # frames drift apart with time: motion, not noise


def test_synthetic_difficulty_and_fps_control_motion():
    def mean_motion(**kw):
        ds = build_dataset(DataConfig(frames=8, resolution=32, **kw), "val")
        return np.mean([motion(ds[i]) for i in range(12)])

    assert mean_motion(difficulty=1.0) > 1.3 * mean_motion(difficulty=0.0)
    assert mean_motion(fps=4.0) > 1.3 * mean_motion(fps=16.0)  # lower fps: further per frame
    big = build_dataset(DataConfig(frames=5, resolution=48), "train")[0]
    assert big.shape == (5, 3, 48, 48)
    with pytest.raises(ValueError, match="unknown split 'dev'; valid: train, val, test"):
        build_dataset(DataConfig(), "dev")
    with pytest.raises(ValueError, match="data.difficulty must be in"):
        build_dataset(DataConfig(difficulty=2.0), "train")
    with pytest.raises(ValueError, match="data.fps must be > 0"):
        build_dataset(DataConfig(fps=0.0), "train")


def test_every_registered_dataset_builds(real_clips_dir, tmp_path):
    assert {"synthetic", "video_folder", "frame_folder"} <= set(DATASETS.list())
    shutil.copy(real_clips_dir / "davis_judo.mp4", tmp_path / "judo.mp4")
    ds = build_dataset(DataConfig(dataset="video_folder", root=str(tmp_path), frames=9, resolution=16), "val")
    assert len(ds) == 1 and ds[0].shape == (9, 3, 16, 16)
    write_sequence(tmp_path / "frames" / "seq", 9)
    ds = build_dataset(DataConfig(dataset="frame_folder", root=str(tmp_path / "frames"), resolution=8), "val")
    assert len(ds) == 1 and ds[0].shape == (9, 3, 8, 8)


# -- real clips -----------------------------------------------------------------------------------------

def test_every_real_clip_loads_with_its_manifest_geometry(real_clips_dir):
    rows = {r["filename"]: r for r in csv.DictReader(open(real_clips_dir / "manifest.csv"))}
    assert len(rows) == 22
    ds = VideoFolderDataset(DataConfig(frames=9, resolution=32), real_clips_dir)
    assert [p.name for p, _ in ds.items] == sorted(rows) and not ds.skipped
    for (path, _), clip in zip(ds.items, ds):
        row, info = rows[path.name], probe_video(path)
        assert (info.frames, info.height, info.width) == (int(row["frames"]), int(row["height"]), int(row["width"]))
        assert abs(info.fps - float(row["fps"])) < 0.01
        assert clip.shape == (9, 3, 32, 32) and 0 <= clip.min() <= clip.max() <= 1 and clip.std() > 0.01
    assert len(read_video(real_clips_dir / "cotracker_pillow.mp4")) == 149


def test_clip_sampling_by_stride_fps_and_count(real_clips_dir, tmp_path):
    assert clip_indices(20, 2, 4, 0) == [[0, 2, 4, 6], [8, 10, 12, 14]]  # non-overlapping, tail dropped
    assert clip_indices(20, 1, 9, 1) == [list(range(9))] and clip_indices(8, 1, 9, 0) == []
    shutil.copy(real_clips_dir / "davis_bmx-trees.mp4", tmp_path / "bmx.mp4")  # 80 frames at 24 fps
    ds = VideoFolderDataset(DataConfig(frames=8, resolution=16, frame_stride=3, clips_per_video=0), tmp_path)
    assert len(ds) == 3 and ds.items[1][1] == list(range(24, 46, 3))
    frames = read_video(tmp_path / "bmx.mp4", range(24, 46, 3))
    torch.testing.assert_close(ds[1], to_clip(frames, 16))
    at_8fps = VideoFolderDataset(DataConfig(frames=8, fps=8.0, clips_per_video=2), tmp_path)
    assert [idx for _, idx in at_8fps.items] == [list(range(0, 22, 3)), list(range(24, 46, 3))]
    with pytest.raises(ValueError, match="data.fps must be > 0"):
        VideoFolderDataset(DataConfig(fps=-1.0), tmp_path)


def test_to_clip_centre_crops_then_resizes():
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 200  # the centre square is uniform; the side bands are black
    clip = to_clip(frames, 16)
    assert clip.shape == (2, 3, 16, 16)
    torch.testing.assert_close(clip, torch.full_like(clip, 200 / 255))
    assert to_clip(frames[:, :10, :10], 16).shape == (2, 3, 16, 16)  # upscaling works too


# -- bad files --------------------------------------------------------------------------------------------

def faststart(data: bytes) -> bytes:
    """The same mp4 with its index (moov) before the media data, as streaming encoders write it.

    Truncating such a file keeps the index, so the container reports frames that no longer exist.
    """
    atoms, i = [], 0
    while i < len(data):
        size = struct.unpack(">I", data[i:i + 4])[0]
        atoms.append(data[i:i + size])
        i += size
    moov = bytearray(next(a for a in atoms if a[4:8] == b"moov"))
    j = moov.find(b"stco")
    while j >= 0:  # chunk offsets move by the size of the moved index
        for k in range(struct.unpack(">I", moov[j + 8:j + 12])[0]):
            o = j + 12 + 4 * k
            moov[o:o + 4] = struct.pack(">I", struct.unpack(">I", moov[o:o + 4])[0] + len(moov))
        j = moov.find(b"stco", j + 4)
    rest = [a for a in atoms if a[4:8] not in (b"moov", b"ftyp")]
    return atoms[0] + bytes(moov) + b"".join(rest)


@pytest.fixture()
def bad_folder(tmp_path, real_clips_dir):
    shutil.copy(real_clips_dir / "davis_judo.mp4", tmp_path / "good.mp4")
    data = (real_clips_dir / "davis_bear.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    return tmp_path


def test_truncated_and_random_files_give_named_errors(bad_folder):
    for name in ("truncated.mp4", "random.mp4"):
        for fn in (read_video, probe_video):
            with pytest.raises(VideoReadError, match=f"{name}: corrupt or truncated video"):
                fn(bad_folder / name)
    with pytest.raises(VideoReadError, match="random.mp4: corrupt or truncated"):
        VideoFolderDataset(DataConfig(frames=9), bad_folder)  # the first bad file, by name


def test_skip_policy_loads_the_rest_and_counts_the_skips(bad_folder):
    with pytest.warns(UserWarning, match="skipped 2 unusable file"):
        ds = VideoFolderDataset(DataConfig(frames=9, resolution=16, on_error="skip"), bad_folder)
    assert len(ds) == 1 and ds[0].shape == (9, 3, 16, 16)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in ds.skipped) == ["random.mp4", "truncated.mp4"]
    assert all("corrupt or truncated" in reason for _, reason in ds.skipped)


def test_over_reporting_container_is_clamped_or_named(tmp_path, real_clips_dir):
    data = faststart((real_clips_dir / "davis_bear.mp4").read_bytes())
    (tmp_path / "whole.mp4").write_bytes(data)
    assert len(read_video(tmp_path / "whole.mp4")) == 82  # the rewrite itself is lossless
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    reported = probe_video(cut).frames
    frames = read_video(cut)  # all frames: clamped to those that decode, no hang
    assert 0 < len(frames) < reported
    with pytest.raises(VideoReadError, match=f"cut.mp4: corrupt or truncated video: reports {reported} frames"):
        read_video(cut, range(reported))
    (tmp_path / "whole.mp4").unlink()
    shutil.copy(real_clips_dir / "davis_bmx-trees.mp4", tmp_path / "good.mp4")  # 80 frames
    with pytest.warns(UserWarning, match="skipped 1"):  # caught while indexing, not mid-training
        ds = VideoFolderDataset(DataConfig(frames=reported - 1, on_error="skip"), tmp_path)
    assert [p.rsplit("/", 1)[1] for p, _ in ds.skipped] == ["cut.mp4"] and len(ds) == 1


def test_a_hung_decoder_becomes_an_error(monkeypatch, real_clips_dir):
    def stuck(path):
        time.sleep(5)

    monkeypatch.setattr(video_io, "_reader", stuck)
    start = time.monotonic()
    with pytest.raises(VideoReadError, match="davis_judo.mp4: decoding did not finish within 0.2 s"):
        read_video(real_clips_dir / "davis_judo.mp4", timeout_s=0.2)
    assert time.monotonic() - start < 2


def test_other_bad_inputs_name_the_file(tmp_path, real_clips_dir):
    with pytest.raises(VideoReadError, match="missing.mp4: no such file"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(VideoReadError, match=r"clip.gif: unsupported extension '.gif'; valid: .mp4, .avi"):
        probe_video(tmp_path / "clip.gif")
    with pytest.raises(VideoReadError, match="clip.gif: unsupported extension"):
        VideoFolderDataset(DataConfig(), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="empty: empty folder"):
        VideoFolderDataset(DataConfig(), tmp_path / "empty")
    with pytest.raises(VideoReadError, match="nowhere: no such folder"):
        VideoFolderDataset(DataConfig(), tmp_path / "nowhere")
    short = tmp_path / "short"
    short.mkdir()
    shutil.copy(real_clips_dir / "davis_judo.mp4", short / "judo.mp4")  # 16 frames
    with pytest.raises(VideoReadError, match="judo.mp4: too short: 16 frames, a 17-frame clip"):
        VideoFolderDataset(DataConfig(frames=17), short)
    with pytest.raises(VideoReadError, match="judo.mp4: too short: has 16 frames, frame 16 was asked for"):
        read_video(short / "judo.mp4", [0, 16])
    with pytest.raises(ValueError, match="on_error must be one of raise, skip"):
        VideoFolderDataset(DataConfig(on_error="ignore"), short)


# -- frame folders ------------------------------------------------------------------------------------------

def write_sequence(folder, n, size=(40, 30)):
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", size, (i * 20, 0, 0)).save(folder / f"{i:05d}.jpg")


def test_frame_folder_dataset_and_its_errors(tmp_path):
    write_sequence(tmp_path / "a", 10)
    write_sequence(tmp_path / "b", 9)
    ds = FrameFolderDataset(DataConfig(frames=9, resolution=16), tmp_path)
    assert len(ds) == 2 and ds[0].shape == (9, 3, 16, 16)
    assert read_frames_folder(tmp_path / "a").shape == (10, 30, 40, 3)
    assert ds[0][:, 0, 0, 0].diff().min() > 0  # frames in name order
    write_sequence(tmp_path / "short", 3)
    (tmp_path / "none").mkdir()
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = FrameFolderDataset(DataConfig(frames=9, on_error="skip"), tmp_path)
    reasons = dict((p.rsplit("/", 1)[1], r) for p, r in ds.skipped)
    assert "empty folder" in reasons["none"] and "too short: 3 frames" in reasons["short"]
    with pytest.raises(VideoReadError, match="no sequence folders"):
        FrameFolderDataset(DataConfig(), tmp_path / "a")


# -- info CLI -------------------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mardini_bench.data", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_info_cli_on_the_real_clips(real_clips_dir):
    ok = run_cli("info", real_clips_dir, "--json")
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)
    manifest = {r["filename"]: r for r in csv.DictReader(open(real_clips_dir / "manifest.csv"))}
    assert len(rows) == 22
    for r in rows:
        m = manifest[r["path"].rsplit("/", 1)[1]]
        assert (r["frames"], r["height"], r["width"]) == (int(m["frames"]), int(m["height"]), int(m["width"]))


def test_info_cli_fails_on_bad_files_and_bad_paths(bad_folder, capsys):
    from mardini_bench.data.__main__ import main

    assert main(["info", str(bad_folder), "--json"]) == 1
    errors = [r for r in json.loads(capsys.readouterr().out) if "error" in r]
    assert len(errors) == 2 and all(r["path"].rsplit("/", 1)[1] in r["error"] for r in errors)
    assert main(["info", str(bad_folder)]) == 1
    table = capsys.readouterr().out
    assert "good.mp4" in table and "error: corrupt or truncated" in table
    with pytest.raises(SystemExit) as exit_:
        main(["info", str(bad_folder / "nope")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {bad_folder / 'nope'}: no such file or folder\n"
