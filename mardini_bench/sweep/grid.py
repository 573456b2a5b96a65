"""Sweep grids: TOML files in `ablations/`, plus `key=v1,v2` axes from the command line.

A grid file holds a base config (dotted overrides), Cartesian axes (`[grid]`), zipped axes (`[zip]`,
equal lengths, varied together), seeds, and `[slurm]` launch options::

    name = "quickstart"
    base = ["model=tiny", "train.steps=200"]
    seeds = [0, 1]
    [grid]
    "model.planner.depth" = [1, 2]
    [zip]
    "model.generator.dim" = [32, 48]
    "model.generator.heads" = [2, 4]

`expand(grid)` turns it into one override list per point: the grid axes vary slowest, in file order,
then the zipped axes, then the seed. Values stay strings so that a point read from a file and one
typed on the command line go through the same `apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from mardini_bench.config import ConfigError, parse_override

SEED_KEY = "seed"  # the `seeds` list is the axis of this RunConfig field
# Most points one launch plans. Planning validates every point (a few ms each) and a launch makes one
# folder and one job per point; the grids in ablations/ have at most 15. A grid far larger is almost
# always a slip (an axis of a thousand values): refused from its axis lengths, before any point is built.
MAX_POINTS = 10_000
TOP_KEYS = ("name", "description", "base", "seeds", "grid", "zip", "slurm")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # becomes a folder name: no separators


class GridError(ConfigError):
    """A malformed grid file or axis; the message names the file or key at fault."""


@dataclass(frozen=True)
class Grid:
    """A parsed sweep grid; axis values are override strings."""

    name: str  # sweep folder: <results>/<name>/
    description: str = ""
    source: str = "<cli>"  # the file it came from, for messages and the manifest
    base: Tuple[str, ...] = ()  # overrides applied to every point, in order, before the axes
    product: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # Cartesian axes, incl. seed
    zipped: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # varied together
    slurm: Dict[str, Any] = field(default_factory=dict)  # raw [slurm] table; see launch.LaunchOptions


def override_value(value: Any, where: str) -> str:
    """A TOML scalar or list as the string `apply_overrides` parses (lists as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list):
        return json.dumps(value)
    raise GridError(f"{where}: values must be strings, numbers, booleans or lists, got {value!r}")


def _axis(values: Any, where: str) -> Tuple[str, ...]:
    if not isinstance(values, list):
        raise GridError(f"{where}: an axis is a list of values, e.g. [1, 2], got {values!r}")
    if not values:
        raise GridError(f"{where}: empty axis (give at least one value)")
    return tuple(override_value(v, where) for v in values)


def _axes(table: Any, where: str) -> Dict[str, Tuple[str, ...]]:
    if not isinstance(table, dict):
        raise GridError(f"{where}: expected a table of 'dotted.key' = [values]")
    return {key: _axis(values, f"{where} axis '{key}'") for key, values in table.items()}


def _str_list(value: Any, where: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GridError(f"{where}: expected a list of strings like [\"model=tiny\"], got {value!r}")
    try:
        for text in value:
            parse_override(text)
    except ConfigError as err:
        raise GridError(f"{where}: {err}") from None
    return tuple(value)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise GridError(f"{where}: name {value!r} must be a folder name (letters, digits, _ . -)")
    return value


def from_mapping(data: Mapping[str, Any], source: str, default_name: str) -> Grid:
    """Validate a parsed grid table (unknown keys, types, empty or unequal axes) into a `Grid`."""
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise GridError(f"{source}: unknown key '{unknown[0]}'; valid: {', '.join(TOP_KEYS)}")
    product = _axes(data.get("grid", {}), f"{source} [grid]")
    if "seeds" in data:
        if SEED_KEY in product:
            raise GridError(f"{source}: the seed axis is given twice (seeds and [grid] seed)")
        product[SEED_KEY] = _axis(data["seeds"], f"{source} seeds")
    slurm = data.get("slurm", {})
    if not isinstance(slurm, dict):
        raise GridError(f"{source} [slurm]: expected a table of launch options")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise GridError(f"{source}: description must be a string")
    grid = Grid(name=_name(data.get("name", default_name), source), description=description, source=source,
                base=_str_list(data.get("base", []), f"{source} base"), product=product,
                zipped=_axes(data.get("zip", {}), f"{source} [zip]"), slurm=dict(slurm))
    check_axes(grid)
    return grid


def load_grid(path: str | Path) -> Grid:
    """Parse and validate a grid file; any problem is a `GridError` naming the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GridError(f"grid file '{path}' not found") from None
    except UnicodeDecodeError:
        raise GridError(f"{path}: cannot read grid file (not UTF-8 text; a grid is a TOML file)") from None
    except OSError as err:
        raise GridError(f"{path}: cannot read grid file ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise GridError(f"{path}: malformed TOML: {err}") from None
    return from_mapping(data, str(path), path.stem)


def check_axes(grid: Grid) -> None:
    """Zipped axes must have equal lengths; a key is set in one place only: an axis may not be both
    Cartesian and zipped, nor also fixed in `base` (the axis would win while the header shows the
    base value), and `base` sets a key once."""
    lengths = {key: len(values) for key, values in grid.zipped.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise GridError(f"{grid.source} [zip]: zipped axes need equal lengths, got {sizes}")
    both = sorted(set(grid.product) & set(grid.zipped))
    if both:
        raise GridError(f"{grid.source}: axis '{both[0]}' is both in [grid] and [zip]")
    base = [parse_override(text)[0] for text in grid.base]
    twice = sorted({key for key in base if base.count(key) > 1})
    if twice:
        raise GridError(f"{grid.source} base: '{twice[0]}' is set twice; keep one value")
    fixed = sorted(set(base) & (set(grid.product) | set(grid.zipped)))
    if fixed:
        where = "seeds" if fixed[0] == SEED_KEY else "[zip]" if fixed[0] in grid.zipped else "[grid]"
        raise GridError(f"{grid.source}: '{fixed[0]}' is set both in base and in {where}; keep it in one of them")


def count_points(grid: Grid) -> int:
    """Points the grid expands to (duplicates included), from its axis lengths alone."""
    rows = len(next(iter(grid.zipped.values()))) if grid.zipped else 1
    return rows * math.prod(len(values) for values in grid.product.values())


def check_size(grid: Grid) -> None:
    """A grid of more than MAX_POINTS points is refused before any point is built."""
    n = count_points(grid)
    if n > MAX_POINTS:
        axes = " x ".join(f"{key} ({len(values)})" for key, values in {**grid.product, **grid.zipped}.items())
        raise GridError(f"{grid.source}: {n} points ({axes}) is more than one sweep plans ({MAX_POINTS}); "
                        f"use fewer values or split the grid")


def check_not_empty(grid: Grid) -> None:
    """A grid that sets nothing (an empty or wrong file) would launch the default config: refuse it."""
    if not (grid.base or grid.product or grid.zipped):
        raise GridError(f"{grid.source}: empty grid: no base, seeds, [grid] or [zip] (nor key=v1,v2 on the command "
                        'line); give at least one, e.g. base = ["model=tiny"]')


def split_values(text: str) -> List[str]:
    """'1,2' -> ['1', '2']; commas inside [...] or (...) do not split: '[0,-1],[0,4]' -> 2 values."""
    values, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def with_cli_args(grid: Grid, args: Sequence[str]) -> Grid:
    """Apply `key=v1,v2` (add or replace an axis) and `key=v` (fix a value) from the command line; either
    replaces what the file's base sets for that key, so the header shows what runs."""
    base, product, zipped = list(grid.base), dict(grid.product), dict(grid.zipped)
    for arg in args:
        key, text = parse_override(arg)
        values = tuple(split_values(text))
        if any(not v for v in values):
            raise GridError(f"command line axis '{key}': empty value in {text!r}")
        if len(values) == 1:
            product.pop(key, None)
            zipped.pop(key, None)
            base = _fixed(base, key, values[0])
        else:
            base = [item for item in base if parse_override(item)[0] != key]
            _add_axis(product, zipped, key, values)
    grid = dataclasses.replace(grid, base=tuple(base), product=product, zipped=zipped)
    check_axes(grid)
    return grid


def _fixed(base: List[str], key: str, value: str) -> List[str]:
    """`base` with `key=value`: in place of the key's own entry (base keys after it still refine it, as
    model.planner.depth=2 refines model=small), else last."""
    keys = [parse_override(item)[0] for item in base]
    if key not in keys:
        return base + [f"{key}={value}"]
    return [f"{key}={value}" if k == key else item for k, item in zip(keys, base)]


def _add_axis(product: Dict[str, Tuple[str, ...]], zipped: Dict[str, Tuple[str, ...]], key: str,
              values: Tuple[str, ...]) -> None:
    if key in zipped:
        zipped[key] = values
        return
    product[key] = values
    if key != SEED_KEY and SEED_KEY in product:
        product[SEED_KEY] = product.pop(SEED_KEY)  # keep seeds the fastest-varying axis


def expand(grid: Grid) -> List[Tuple[str, ...]]:
    """The axis overrides of every point (base excluded): grid axes slowest, then zip, then seed."""
    keys = [k for k in grid.product if k != SEED_KEY]
    seeds = grid.product.get(SEED_KEY, (None,))
    rows = list(zip(*grid.zipped.values())) if grid.zipped else [()]
    points = []
    for combo in itertools.product(*(grid.product[k] for k in keys)):
        for row in rows:
            for seed in seeds:
                point = [f"{k}={v}" for k, v in zip(keys, combo)]
                point += [f"{k}={v}" for k, v in zip(grid.zipped, row)]
                point += [] if seed is None else [f"{SEED_KEY}={seed}"]
                points.append(tuple(point))
    return points
