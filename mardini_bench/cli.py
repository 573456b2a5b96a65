"""Command-line plumbing: `mardini-bench <command>`, and user errors as one `error: ...` line, exit 2.

    mardini-bench sweep ablations/quickstart.toml      # = python -m mardini_bench.sweep ...
    mardini-bench status results/quickstart           # = python -m mardini_bench.sweep status ...
    mardini-bench report results/quickstart           # = python -m mardini_bench.report ...

Every `python -m mardini_bench.X` form keeps working; this entry point forwards to the same `main`.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Callable, Dict, List, NoReturn, Optional, Sequence, Tuple, Type

from mardini_bench.config import ConfigError
from mardini_bench.io import DamagedFileError, NoSpaceError
from mardini_bench.registry import UnknownComponentError
from mardini_bench.weights import WeightsError

USER_ERRORS: Tuple[Type[BaseException], ...] = (ConfigError, UnknownComponentError, WeightsError, DamagedFileError,
                                                NoSpaceError)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def user_errors(*extra: Type[BaseException]) -> Callable:
    """Decorate a `main()`: known user errors print one line and exit 2 instead of a traceback."""

    def wrap(main: Callable) -> Callable:
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except USER_ERRORS + extra as err:
                fail(str(err))
            except PermissionError as err:  # a file or folder this user may not read or write
                fail(f"{err.filename or err}: permission denied (check its mode and owner)")

        return run

    return wrap


# command -> (module whose main() runs it, arguments put in front, what it does). Modules are imported
# by name when their command runs: most pull in torch, and `mardini-bench --help` should not.
COMMANDS: Dict[str, Tuple[str, Tuple[str, ...], str]] = {
    "sweep": ("mardini_bench.sweep.__main__", (), "plan and launch a grid (locally or on SLURM)"),
    "status": ("mardini_bench.sweep.__main__", ("status",), "state of every run of a sweep"),
    "collect": ("mardini_bench.sweep.__main__", ("collect",), "tidy results.csv of a sweep"),
    "report": ("mardini_bench.analysis.sweep_report", (), "tables, significance tests, plots and report.html"),
    "run": ("mardini_bench.run.one_run", (), "train, evaluate and cost one config in a folder"),
    "long-video": ("mardini_bench.run.long_video", (), "long clips from a finished run: GIF, MP4, FVD"),
    "metrics": ("mardini_bench.metrics.cli", (), "FVD / FID / PSNR / SSIM of two sets of videos"),
    "data": ("mardini_bench.data.__main__", (), "build datasets, latent statistics"),
    "params": ("mardini_bench.cost.param_counts", (), "parameter counts of presets"),
    "cost": ("mardini_bench.cost.cli", (), "the paper's Table 3 at paper scale"),
    "weights": ("mardini_bench.weights", (), "fetch or verify the metric and codec weights"),
}


def usage() -> str:
    lines = ["usage: mardini-bench <command> [args...]   (mardini-bench <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<11} {what}" for name, (_, _, what) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] not in COMMANDS:
        fail(f"unknown command {args[0]!r}; valid: {', '.join(COMMANDS)}")
    module, prefix, _ = COMMANDS[args[0]]
    code = importlib.import_module(module).main([*prefix, *args[1:]])
    return int(code or 0)
