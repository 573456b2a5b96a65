"""From a grid to run folders: resolve and validate every point, dedupe by run id, prepare folders."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from mardini_bench.config import (ConfigError, RunConfig, apply_overrides, config_hash, from_dict, parse_override,
                                  to_dict)
from mardini_bench.sweep import rundir
from mardini_bench.sweep.grid import Grid, GridError, check_size, expand

MANIFEST = rundir.MANIFEST


@dataclass(frozen=True)
class Point:
    """One sweep point: its index in the grid, run id (config hash) and resolved config."""

    idx: int
    run_id: str
    overrides: Tuple[str, ...]  # the axis values of this point (the grid's base is shared)
    config: Any  # RunConfig


def resolve(grid: Grid) -> Tuple[List[Point], List[Tuple[int, int]]]:
    """Every point's RunConfig, validated before anything is submitted.

    Returns the unique points and (index, index of the earlier identical point) for duplicates: two
    points that resolve to the same config are one run, so they share one folder.
    """
    check_size(grid)
    points: List[Point] = []
    duplicates: List[Tuple[int, int]] = []
    seen: Dict[str, int] = {}
    for idx, axes in enumerate(expand(grid)):
        cfg = resolve_point(grid, axes)
        run_id = config_hash(cfg)
        if run_id in seen:
            duplicates.append((idx, seen[run_id]))
            continue
        seen[run_id] = idx
        points.append(Point(idx, run_id, tuple(axes), cfg))
    return points, duplicates


# Axes that swap a whole section of the config (`model` = a preset and its training recipe).
WHOLE = tuple(f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(getattr(RunConfig(), f.name)))


def point_overrides(grid: Grid, axes: Sequence[str]) -> List[str]:
    """One point's overrides in the order they apply: an axis that swaps a whole section first (a
    `model` axis), so the base's keys refine every preset it names instead of being undone by it;
    then the base; then the other axes."""
    whole = [a for a in axes if parse_override(a)[0] in WHOLE]
    return [*whole, *grid.base, *(a for a in axes if a not in whole)]


def resolve_point(grid: Grid, axes: Sequence[str]) -> Any:
    """The point's RunConfig in the form the job reads back from config.json."""
    try:
        cfg = apply_overrides(RunConfig(), point_overrides(grid, axes))
    except ConfigError as err:
        raise GridError(f"{grid.source}: {err}") from None
    # Hash what the job will load: a JSON round trip can retype values (an int default in a float
    # tuple comes back as float), and the run id must match the config the run actually sees.
    return from_dict(RunConfig, to_dict(cfg))


def write_manifest(sweep_dir: Path, grid: Grid, points: Sequence[Point], cluster: str) -> None:
    """sweep.json: what the latest launch of this sweep asked for (status/collect read it)."""
    rundir.write_json(sweep_dir / MANIFEST, {
        "name": grid.name, "description": grid.description, "grid": grid.source, "base": list(grid.base),
        "cluster": cluster, "updated_at": time.time(),
        "points": [{"idx": p.idx, "run_id": p.run_id, "overrides": list(p.overrides)} for p in points]})


def prepare(run_dir: Path, grid: Grid, point: Point, git: Dict[str, Any]) -> None:
    """Write the folder's description and clear the markers of an earlier, unfinished attempt."""
    rundir.write_json(run_dir / rundir.CONFIG, to_dict(point.config))
    rundir.write_json(run_dir / rundir.OVERRIDES, list(point.overrides))  # the axes; base is in sweep.json
    rundir.write_json(run_dir / rundir.GIT, git)
    for name in (rundir.STARTED, rundir.FAILED, rundir.SUBMITTED):
        (run_dir / name).unlink(missing_ok=True)
