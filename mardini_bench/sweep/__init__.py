"""Sweeps: TOML grids -> validated run configs -> one submitit job array, with per-run folders.

    python -m mardini_bench.sweep ablations/quickstart.toml --dry-run
    python -m mardini_bench.sweep ablations/quickstart.toml --cluster slurm --partition gpu
    python -m mardini_bench.sweep status results/quickstart

Each run lives in `<results>/<sweep>/<run_id>/` with `run_id = config_hash(resolved config)`, so a
finished point is never run twice and the same point never gets two folders.
"""

from mardini_bench.sweep.grid import Grid, GridError, expand, load_grid, with_cli_args
from mardini_bench.sweep.plan import Point, resolve

__all__ = ["Grid", "GridError", "Point", "expand", "load_grid", "resolve", "with_cli_args"]
