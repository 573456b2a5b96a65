"""The long-video demo: a finished tiny run makes clips longer than its window (given key frames kept),
writes the GIF, MP4 and FVD JSON, shows them in the report, and refuses bad input in one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mardini_bench.analysis.sweep_report import long_video_sections
from mardini_bench.cli import main as cli_main
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.run import long_video
from mardini_bench.run.evaluate import eval_clips
from mardini_bench.run.train import CHECKPOINT, train
from tasks import plan_long

WINDOW, FRAMES = 5, 9  # the tiny model's clip length; the long clips (I3D takes 9 frames at least)
TINY = ["model=tiny", "model.diffusion.sample_steps=2", f"data.frames={WINDOW}", "data.resolution=16",
        "data.num_train=8", "data.num_eval=6", "eval.num_videos=6", "train.batch_size=2", "train.steps=2",
        "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A finished tiny run (2 steps) and a copy of it stopped after its first step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root, cfg = tmp_path_factory.mktemp("long"), apply_overrides(RunConfig(), TINY)
    train(cfg, root / "done", until=1)
    shutil.copytree(root / "done", root / "unfinished")
    trained = train(cfg, root / "done")
    torch.set_num_threads(threads)
    return {"done": root / "done", "unfinished": root / "unfinished", "model": trained.model}


def test_the_loaded_model_is_the_one_training_evaluates(runs):
    cfg, model, step = long_video.load_run(runs["done"])
    assert step == cfg.train.steps == 2 and not model.training
    want = runs["model"].state_dict()  # the EMA copy
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items()) and model.state_dict().keys() == want.keys()


@pytest.fixture()
def finished(runs, tmp_path) -> Path:
    """A fresh copy of the finished run: each test writes its own long_video/."""
    return Path(shutil.copytree(runs["done"], tmp_path / "run"))


def test_generated_clips_keep_the_given_key_frames(runs, one_thread):
    cfg, model, _ = long_video.load_run(runs["done"])
    real = eval_clips(long_video.long_config(cfg, FRAMES, 3, seed=0))
    positions = list(plan_long(2, WINDOW, FRAMES).keyframe_positions)
    assert positions == [0, 4]
    fake = long_video.generate_clips(model, real, WINDOW, positions, seed=0, batch=2)
    assert fake.shape == real.shape == (3, FRAMES, 3, 16, 16)
    assert torch.equal(fake[:, positions], real[:, positions])
    assert not torch.equal(fake, real)
    held = long_video.repeat_last(real, positions)
    assert torch.equal(held[:, :4], real[:, [0] * 4]) and torch.equal(held[:, 4:], real[:, [4] * 5])


def test_media_without_pyav_is_the_gif_and_one_warning(tmp_path, monkeypatch, capsys):
    real, fake = torch.rand(2, FRAMES, 3, 16, 16), torch.rand(2, FRAMES, 3, 16, 16)
    (tmp_path / long_video.MP4).write_bytes(b"an older clip")
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` fails as if it were not installed
    assert long_video.write_media(tmp_path, real, fake, [0], fps=8) == [long_video.GIF]
    assert capsys.readouterr().err.strip().splitlines() == [
        f"warning: wrote {long_video.GIF} but no {long_video.MP4}: PyAV is not installed (pip install av)"]
    assert not (tmp_path / long_video.MP4).exists()
    with Image.open(tmp_path / long_video.GIF) as gif:
        assert gif.n_frames == FRAMES and gif.size == (2 * 2 * 16 * 4, 16 * 4)  # 2 clips, real | generated, 4x


def test_the_demo_writes_gif_mp4_and_both_fvd_rows(finished, weights_dir, monkeypatch, capsys, one_thread):
    av = pytest.importorskip("av", reason="PyAV is not installed (pip install av): the MP4 is not written")
    monkeypatch.setenv("MARDINI_BENCH_WEIGHTS", str(weights_dir))
    long_video.main([str(finished), "--frames", str(FRAMES), "--clips", "2", "--keyframes", "2", "--seed", "3"])
    out = finished / long_video.FOLDER
    assert f"wrote {out / long_video.RESULT}" in capsys.readouterr().out
    result = json.loads((out / long_video.RESULT).read_text())
    assert [r["method"] for r in result["records"]] == ["model", "repeat_last"]
    for rec in result["records"]:
        assert rec["metric"] == "fvd" and np.isfinite(rec["value"]) and rec["protocol"]["frames"] == FRAMES
        assert rec["protocol"]["num_real"] == rec["protocol"]["num_fake"] == 2
    want = {"frames": FRAMES, "window": WINDOW, "clips": 2, "seed": 3, "keyframes": 2, "keyframe_positions": [0, 4]}
    assert {k: result["protocol"][k] for k in want} == want
    assert result["run_id"] == "run" and result["media"] == [long_video.GIF, long_video.MP4]
    samples = np.load(out / long_video.SAMPLES)
    assert samples["output"].shape[:2] == (2, FRAMES)
    assert np.array_equal(samples["output"][:, [0, 4]], samples["real"][:, [0, 4]])
    with Image.open(out / long_video.GIF) as gif:
        assert gif.n_frames == FRAMES
    with av.open(str(out / long_video.MP4)) as video:
        assert sum(1 for _ in video.decode(video=0)) == FRAMES
    sections, figures = long_video_sections(finished.parent, ["nothing here", "run"])  # the report's part
    assert [title for title, _, _ in sections] == ["Long video, run run", "Long video FVD, run run (9 frames, 2 clips)"]
    assert "2 real key frame(s) at [0, 4]" in sections[0][2][0] and "has the lower FVD" in sections[0][2][-1]
    assert list(sections[1][2]["method"]) == ["model", "repeat_last"] and figures == [out / long_video.GIF]


def no_output(run: Path) -> bool:
    return not (run / long_video.FOLDER).exists() and not list(run.glob(".*tmp"))


@pytest.mark.parametrize("argv, needle", [
    (["--frames", "5"], "--frames 5: must be more than the model's 5 frames and at least 9"),
    (["--frames", "8"], "--frames 8: must be more than the model's 5 frames and at least 9"),
    (["--clips", "1"], "--clips 1: FVD needs at least 2 clips"),
    (["--frames", "9", "--keyframes", "9"], "--keyframes 9: valid: 1 to 8"),
])
def test_bad_requests_are_one_error_line_and_write_nothing(finished, argv, needle, capfd):
    with pytest.raises(SystemExit) as exit_:
        long_video.main([str(finished), *argv])
    lines = capfd.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert no_output(finished)


@pytest.mark.parametrize("folder, needle", [
    ("missing", "missing: no such run folder"),
    ("empty", "empty/last.pt: not found; the run has not trained yet"),
    ("unfinished", "unfinished/last.pt: the run stopped at step 1 of train.steps=2; finish it first"),
    ("damaged", "damaged/last.pt: not a readable training checkpoint"),
])
def test_run_folders_without_a_finished_model_are_refused(runs, tmp_path, folder, needle, capfd):
    run = tmp_path / folder
    if folder == "empty":
        run.mkdir()
    elif folder == "unfinished":
        shutil.copytree(runs["unfinished"], run)
    elif folder == "damaged":
        shutil.copytree(runs["done"], run)
        data = (run / CHECKPOINT).read_bytes()
        (run / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit) as exit_:
        cli_main(["long-video", str(run)])  # through `mardini-bench long-video`
    lines = capfd.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert no_output(run) if run.exists() else True
