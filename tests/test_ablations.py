"""Every grid in ablations/ resolves to runs, and every paper experiment has one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest

from mardini_bench.config import RunConfig, apply_overrides, to_dict
from mardini_bench.sweep.grid import load_grid, with_cli_args
from mardini_bench.sweep.plan import resolve

REPO = Path(__file__).resolve().parents[1]
GRIDS = sorted(REPO.glob("ablations/*.toml"))
# What a smoke step can shrink without changing the variant: batch, sampling steps, evaluation.
SMOKE = ["train.batch_size=2", "model.diffusion.sample_steps=2"]


# Grids that read the user's own videos name no folder; a user passes one on the command line.
USER_DATA = {"paper_scale": ["data.root=/data/videos"]}


def _variants(grid_path: Path) -> List[RunConfig]:
    """The grid's distinct (model, mask (its task mix too), data, curriculum) configs, seed and run length aside."""
    points, _ = resolve(with_cli_args(load_grid(grid_path), USER_DATA.get(grid_path.stem, [])))
    seen: Dict[str, RunConfig] = {}
    for point in points:
        cfg = apply_overrides(point.config, SMOKE)
        d = to_dict(cfg)
        key = repr((d["model"], d["mask"], d["data"], d["train"]["schedule"]))
        seen.setdefault(key, cfg)
    return list(seen.values())


@pytest.mark.parametrize("grid_path", GRIDS, ids=[p.stem for p in GRIDS])
def test_every_grid_resolves_to_runs(grid_path):
    assert _variants(grid_path), f"{grid_path.name} resolves to no runs"


def test_every_paper_experiment_has_a_grid():
    names = {p.stem for p in GRIDS}
    assert {"quickstart", "table2", "table3", "fig6a_ddim_steps", "fig6c_identity", "mask_schedule",
            "generator_size", "attention_type", "planner_depth"} <= names


def test_the_paper_scale_grid_needs_the_users_videos():
    with pytest.raises(Exception, match=r"data\.root: data\.dataset=video_folder reads clips from a folder"):
        resolve(load_grid(REPO / "ablations" / "paper_scale.toml"))


def test_the_cpu_grids_keep_their_run_ids():
    """Every point of every CPU grid keeps the run id it had when its frozen reference was made: a new
    setting or preset must not rename a run (tests/cpu_run_ids.json holds them; the gpu_* grids are new)."""
    pinned = json.loads((REPO / "tests" / "cpu_run_ids.json").read_text())
    now = {}
    for grid_path in GRIDS:
        if not grid_path.stem.startswith("gpu_"):
            points, _ = resolve(with_cli_args(load_grid(grid_path), USER_DATA.get(grid_path.stem, [])))
            now[grid_path.stem] = [p.run_id for p in points]
    assert now == pinned
    assert sum(len(ids) for ids in now.values()) == 112
