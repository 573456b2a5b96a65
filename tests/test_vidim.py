"""VIDIM-Bench builders: DAVIS-7 from a DAVIS-layout frame folder made here, UCF101-7 from real clips."""

import csv
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

from mardini_bench.config import DataConfig
from mardini_bench.data import FrameFolderDataset, VideoReadError
from mardini_bench.data.__main__ import main
from mardini_bench.data.vidim import (build_davis7, build_ucf101_7, chunk_starts, resize_linear_light,
                                      stretch_srgb)
from mardini_bench.io import plain_mode


def make_davis(root, sequences):
    """DAVIS layout: root/JPEGImages/480p/<seq>/00000.jpg ..., frames of the given (w, h)."""
    rng = np.random.default_rng(0)
    for name, (n, size) in sequences.items():
        seq = root / "JPEGImages" / "480p" / name
        seq.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(seq / f"{i:05d}.jpg")
    return root


def read_manifest(out):
    return list(csv.DictReader(open(out / "manifest.csv")))


def test_chunks_are_non_overlapping_and_drop_the_tail():
    assert chunk_starts(20) == [0, 9] and chunk_starts(9) == [0] and chunk_starts(8) == []
    assert len(chunk_starts(82)) == 9


def test_resize_is_area_averaging_in_linear_light():
    stripes = np.zeros((512, 512, 3), np.uint8)
    stripes[::2] = 255  # half the rows white: linear mean 0.5 -> 0.5 ** (1 / 2.2) = 186, not 128
    assert np.unique(resize_linear_light(stripes, 256)).tolist() == [186]
    flat = np.full((100, 100, 3), 77, np.uint8)
    assert np.abs(resize_linear_light(flat, 256).astype(int) - 77).max() <= 1  # bicubic up, no drift
    assert stretch_srgb(np.zeros((240, 320, 3), np.uint8)).shape == (256, 256, 3)


def test_build_davis7(tmp_path):
    root = make_davis(tmp_path / "DAVIS", {"bear": (20, (427, 240)), "cows": (9, (300, 280)), "dog": (8, (64, 48))})
    out = tmp_path / "davis7"
    assert build_davis7(root, out) == 3  # bear: 2 chunks (tail of 2 dropped), cows: 1, dog: none
    rows = read_manifest(out)
    assert [(r["clip"], r["source"], r["first_frame"]) for r in rows] == [
        ("bear_00000", "bear", "0"), ("bear_00009", "bear", "9"), ("cows_00000", "cows", "0")]
    assert all((r["frames"], r["height"], r["width"]) == ("9", "256", "256") for r in rows)
    for r in rows:
        pngs = sorted((out / r["clip"]).iterdir())
        assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(9)]
        assert all(Image.open(p).size == (256, 256) and Image.open(p).mode == "RGB" for p in pngs)
    ds = FrameFolderDataset(DataConfig(frames=9, resolution=32), out)  # OUT is a frame-folder dataset
    assert len(ds) == 3 and ds[0].shape == (9, 3, 32, 32)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    assert stat.S_IMODE(out.stat().st_mode) == plain_mode(folder=True)  # not mkdtemp's 0700


def test_build_davis7_is_atomic(tmp_path, capsys):
    root = make_davis(tmp_path / "DAVIS", {"a": (9, (64, 48)), "b": (9, (64, 48))})
    out = tmp_path / "davis7"
    build_davis7(root, out)
    with pytest.raises(FileExistsError, match="davis7: already exists"):
        build_davis7(root, out)
    (root / "JPEGImages" / "480p" / "b" / "00004.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoReadError, match="00004.jpg: corrupt or truncated image"):
        build_davis7(root, out, overwrite=True)
    assert len(read_manifest(out)) == 2 and len(list(out.iterdir())) == 3  # the old build is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DAVIS", "davis7"]
    with pytest.raises(SystemExit) as exit_:  # CLI: one error line, exit 2
        main(["build-davis7", str(root), str(tmp_path / "again")])
    assert exit_.value.code == 2 and "00004.jpg: corrupt or truncated image" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
    (root / "JPEGImages" / "480p" / "b" / "00004.jpg").unlink()  # b: 8 frames now, no complete chunk
    assert main(["build-davis7", str(root), str(out), "--overwrite"]) == 0
    assert [r["clip"] for r in read_manifest(out)] == ["a_00000"]
    with pytest.raises(SystemExit) as exit_:
        main(["build-davis7", str(tmp_path / "nowhere"), str(tmp_path / "x")])
    assert exit_.value.code == 2 and "nowhere/JPEGImages/480p: no such folder" in capsys.readouterr().err


def test_build_ucf101_7_follows_the_test_list(tmp_path, real_clips_dir):
    ucf = tmp_path / "UCF-101"
    (ucf / "ApplyEyeMakeup").mkdir(parents=True)
    shutil.copy(real_clips_dir / "ucf101_applyeyemakeup.avi", ucf / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    shutil.copy(real_clips_dir / "ucf101_applyeyemakeup.avi", ucf / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c02.avi")
    testlist = tmp_path / "testlist01.txt"
    testlist.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    out = tmp_path / "ucf7"
    assert build_ucf101_7(ucf, testlist, out, limit=20, size=32) == 20  # 164 frames: 18 chunks, 2 of the next
    rows = read_manifest(out)
    assert [r["source"] for r in rows] == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi"] * 18 + \
        ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"] * 2  # list order, not sorted order
    assert rows[17]["first_frame"] == "153" and rows[18]["first_frame"] == "0"
    assert Image.open(out / rows[0]["clip"] / "00008.png").size == (32, 32)
    with pytest.raises(VideoReadError, match="hold only 36 9-frame chunks, 400 were asked for"):
        build_ucf101_7(ucf, testlist, tmp_path / "ucf7-full")
    assert not (tmp_path / "ucf7-full").exists()
