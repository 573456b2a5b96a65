"""benchmarks/bench_gpu.py at tiny sizes on the CPU: every section runs and reports its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_every_section_and_writes_its_figures(tmp_path, capsys, monkeypatch, one_thread):
    out = tmp_path / "figures.jsonl"
    figures = load_bench().main(["--device", "cpu", "--smoke", "--out", str(out)])
    names = [f["name"] for f in figures]
    for part in ("data included", "no data", "aten ops per training step", "evaluation", "paper width"):
        assert any(part in name for name in names), part
    assert [json.loads(line)["name"] for line in out.read_text().splitlines()] == names  # written as it went
    trained = [f for f in figures if "clips/s" in f["unit"] and f["value"] is not None]
    assert trained and all(f["value"] > 0 for f in trained)
    assert "done in" in capsys.readouterr().out
