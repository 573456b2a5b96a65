"""LPIPS: equal to the `lpips` package, a Table 4 MidF-LPIPS column, and skipped in one line without weights.

The real backbones (torchvision's ImageNet files) are not needed: a seeded random backbone, saved
as the weight file with its digest registered for the test, exercises every path offline."""

from __future__ import annotations

from pathlib import Path

import lpips as lpips_package
import pandas as pd
import pytest
import torch
import torchvision

from fake_runs import add_derived_metric, make_sweep
from mardini_bench import weights
from mardini_bench.analysis import sweep_report
from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.factory import build_model
from mardini_bench.metrics import METRICS
from mardini_bench.metrics.lpips import BACKBONES, build_net
from mardini_bench.run.evaluate import check_weights, evaluate


def seeded_backbone(arch: str) -> dict:
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None).state_dict()


def reference(net: str, state: dict) -> torch.nn.Module:
    """The `lpips` package's network (its bundled v0.1 calibration) with `state` as its backbone."""
    ref = lpips_package.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    for k in range(1, 6):
        for index, layer in getattr(ref.net, f"slice{k}").named_children():
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(state[f"features.{index}.weight"])
                layer.bias.data.copy_(state[f"features.{index}.bias"])
    return ref


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_the_lpips_package(net):
    state = seeded_backbone(BACKBONES[net].arch)
    ours, ref = build_net(net, state), reference(net, state)
    gen = torch.Generator().manual_seed(1)
    for size in (32, 64):
        a, b = torch.rand(3, 3, size, size, generator=gen), torch.rand(3, 3, size, size, generator=gen)
        with torch.no_grad():
            expected = ref(a * 2 - 1, b * 2 - 1).flatten()  # the package takes [-1, 1]
            got = ours(a, b)
        assert torch.allclose(got, expected, rtol=0, atol=1e-6), (got, expected)
        assert (got > 0).all() and ours(a, a).abs().max() < 1e-6


@pytest.fixture
def lpips_weights(tmp_path, monkeypatch):
    """A weights folder holding a seeded AlexNet saved under torchvision's file name, its digest
    registered in place of the real file's."""
    folder = tmp_path / "weights"
    folder.mkdir()
    name = BACKBONES["alex"].weights_file
    torch.save(seeded_backbone("alexnet"), folder / name)
    spec = weights.KNOWN_WEIGHTS[name]
    fake = weights.WeightSpec(name, weights.sha256_file(folder / name), 0, spec.what, spec.source, optional=True)
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, name, fake)
    return folder


def tiny_cfg(*extra: str) -> RunConfig:
    return apply_overrides(RunConfig(), ["model=tiny", "eval.tasks=[interpolation]", "eval.num_videos=2",
                                         "eval.baselines=[copy_nearest]", *extra])


def test_scored_in_evaluation_per_video_on_the_middle_frame(lpips_weights, tmp_path):
    cfg = tiny_cfg(f"eval.weights={lpips_weights}", "eval.metrics=[psnr,lpips]", "eval.protocol=middle_frame")
    torch.manual_seed(0)
    records = evaluate(build_model(cfg), cfg, tmp_path / "sweep" / "run")
    scored = [r for r in records if r["metric"] == "lpips"]
    assert {r["method"] for r in scored} == {"model", "copy_nearest"}
    for r in scored:
        assert len(r["per_video"]) == 2 and r["value"] == pytest.approx(sum(r["per_video"]) / 2)
        assert r["protocol"]["frame_protocol"] == "middle_frame" and r["protocol"]["scored_frames"] == [4]
        assert r["protocol"]["weights"] == "alexnet-owt-7be5be79.pth"


def test_without_weights_one_line_and_the_other_metrics_stand(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(weights.ENV_VAR, str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = tiny_cfg(f"eval.weights={empty}", "eval.metrics=[psnr,lpips]")
    check_weights(cfg)  # not an error: LPIPS is optional
    torch.manual_seed(0)
    records = evaluate(build_model(cfg), cfg, tmp_path / "sweep" / "run")
    assert {r["metric"] for r in records} == {"psnr"}
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("warning: lpips skipped")
    assert "alexnet-owt-7be5be79.pth" in lines[0] and "fetch" in lines[0]


def test_table4_column_reads_midf_lpips(tmp_path):
    sweep = make_sweep(tmp_path / "s", [({"model.planner.depth": 2}, 0.6), ({"model.planner.depth": 4}, 0.9)],
                       seeds=(0, 1))
    for result_file in sweep.glob("*/result.json"):  # middle-frame LPIPS that falls as SSIM rises
        add_derived_metric(result_file, "ssim", "lpips", lambda v: 1.0 - v, frame_protocol="middle_frame",
                           implementation="mardini_bench.lpips")
    assert sweep_report.main([str(sweep), "--n-boot", "20"]) == 0
    table = (sweep / "table.md").read_text()
    table4 = table[table.index("paper Table 4 shape"):]
    header = table4.splitlines()[2]
    assert "synthetic MidF-LPIPS" in header and header.index("SSIM") < header.index("MidF-LPIPS")
    assert "LPIPS" in pd.read_csv(sweep / "results.csv")["metric"].str.upper().unique()


def test_registered_with_its_direction():
    from mardini_bench.metrics import metric_info

    for name in ("lpips", "lpips_vgg"):
        info = metric_info(name)
        assert not info.higher_is_better and info.kind == "paired" and info.optional_weights
    assert METRICS.in_order().index("ssim") < METRICS.in_order().index("lpips")


def test_fetch_lpips_gets_both_backbones_and_verify_calls_them_optional(tmp_path, monkeypatch, capsys):
    # `fetch` only downloads and checks the sha256, so a few stand-in bytes per file are enough
    # (full-size seeded VGG16 and AlexNet would put 1.6 GB in the temp folder).
    served = {name: f"{name} stand-in".encode() for name in
              ("alexnet-owt-7be5be79.pth", "vgg16-397923af.pth")}
    staging = tmp_path / "served"
    staging.mkdir()
    for name, blob in served.items():
        (staging / name).write_bytes(blob)
        spec = weights.KNOWN_WEIGHTS[name]
        monkeypatch.setitem(weights.KNOWN_WEIGHTS, name, weights.WeightSpec(
            name, weights.sha256_file(staging / name), 0, spec.what, spec.source, optional=True))

    class Torchvision(weights.Downloader):
        def __init__(self) -> None:
            self.urls = []

        def url_download(self, url: str, dest: Path) -> None:
            assert url.startswith(weights.TORCHVISION_MODELS)
            self.urls.append(url)
            dest.write_bytes((staging / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    dest, fake = tmp_path / "dest", Torchvision()
    weights.fetch(dest, downloader=fake, names=["lpips"])
    assert sorted(p.name for p in dest.iterdir()) == sorted(served) and len(fake.urls) == 2
    report_ = weights.verify(dest)
    assert all(report_[name] == "ok" for name in served)
    assert weights.verify_failed(report_)  # the required metric weights are missing there

    assert weights.main(["verify", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "nowhere") in err
