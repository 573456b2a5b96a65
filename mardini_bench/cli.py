"""`mardini-bench <command>`: one argparse tree of every command, and user errors as one `error: ...` line.

    mardini-bench --help                                 # every command, and the `python -m` form of each
    mardini-bench sweep ablations/quickstart.toml      # = python -m mardini_bench.sweep ...
    mardini-bench status results/quickstart           # = python -m mardini_bench.sweep status ...
    mardini-bench report results/quickstart           # = python -m mardini_bench.report ...

Each command is an `args.Command` in its stage's module; that module's `main` is its `python -m` form,
which builds the same parser alone. A command's module is imported only when the command runs (most
load torch): `mardini-bench --help` lists the commands from this file alone.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, NoReturn, Optional, Sequence, Tuple, Type

from mardini_bench.args import ArgumentParser, Command, run_parsed
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
    """Decorate a command's `run` (or a `main()`): known user errors print one line and exit 2 instead of a
    traceback."""

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


@dataclass(frozen=True)
class Entry:
    """A command of the tree, named without importing it."""

    command: str  # "module:attribute" of its `args.Command`, imported when the command runs
    help: str  # one line for `mardini-bench --help`
    alias: str  # the `python -m` form that runs the same command


COMMANDS: Dict[str, Entry] = {
    "sweep": Entry("mardini_bench.sweep.__main__:LAUNCH", "plan and launch a grid (locally or on SLURM)",
                   "python -m mardini_bench.sweep"),
    "status": Entry("mardini_bench.sweep.__main__:STATUS", "state of every run of a sweep",
                    "python -m mardini_bench.sweep status"),
    "collect": Entry("mardini_bench.sweep.__main__:COLLECT", "tidy results.csv of a sweep",
                     "python -m mardini_bench.sweep collect"),
    "report": Entry("mardini_bench.analysis.sweep_report:COMMAND", "tables, significance tests, plots and report.html",
                    "python -m mardini_bench.report"),
    "run": Entry("mardini_bench.run.one_run:COMMAND", "train, evaluate and cost one config in a folder",
                 "python -m mardini_bench.runner"),
    "long-video": Entry("mardini_bench.run.long_video:COMMAND", "long clips from a finished run: GIF, MP4, FVD",
                        "python -m mardini_bench.run.long_video"),
    "metrics": Entry("mardini_bench.metrics.cli:COMMAND", "FVD / FID / PSNR / SSIM / LPIPS of two sets of videos",
                     "python -m mardini_bench.metrics"),
    "data": Entry("mardini_bench.data.__main__:COMMAND", "build datasets, video info, latent statistics",
                  "python -m mardini_bench.data"),
    "claims": Entry("mardini_bench.analysis.claims:COMMAND", "the paper-claims table from the frozen references",
                    "python -m mardini_bench.analysis.claims"),
    "params": Entry("mardini_bench.cost.param_counts:COMMAND", "parameter counts of presets",
                    "python -m mardini_bench.params"),
    "cost": Entry("mardini_bench.cost.cli:COMMAND", "Table 3 at paper scale; training memory per GPU",
                  "python -m mardini_bench.cost"),
    "weights": Entry("mardini_bench.weights:COMMAND", "fetch or verify the metric and codec weights",
                     "python -m mardini_bench.weights"),
}


def load(name: str) -> Command:
    """The `args.Command` of command `name` (its module imported now)."""
    module, _, attribute = COMMANDS[name].command.partition(":")
    return getattr(importlib.import_module(module), attribute)


def build_parser(chosen: Optional[str] = None) -> Tuple[ArgumentParser, Optional[ArgumentParser]]:
    """The `mardini-bench` tree and the subparser of `chosen`. Only `chosen` gets its arguments (its module
    imported); every other command is its name and help line, so `--help` imports no command."""
    aliases = "\n".join(f"  {name:<11} {entry.alias}" for name, entry in COMMANDS.items())
    parser = ArgumentParser(prog="mardini-bench", usage="mardini-bench <command> [options]",
                            description="Benchmark and ablate MarDini-style video generators.",
                            epilog=f"every command also runs as its python -m form:\n{aliases}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    # the metavar's width also makes room for the longest command name in the help's column
    commands = parser.add_subparsers(title="commands (mardini-bench <command> --help: its options)",
                                     metavar="<command> [options]")
    subparser = None
    for name, entry in COMMANDS.items():
        command = load(name) if name == chosen else None
        sub = commands.add_parser(name, prog=f"mardini-bench {name}", help=entry.help,
                                  description=command.description if command else entry.help)
        if command:
            command.add_arguments(sub)
            subparser = sub
    return parser, subparser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        build_parser()[0].print_help()
        return 0
    if args[0] not in COMMANDS:
        fail(f"unknown command {args[0]!r}; valid: {', '.join(COMMANDS)}")
    parser, subparser = build_parser(args[0])
    parsed, extra = parser.parse_known_args(args)
    if extra:  # named by the command's parser, whose options they are not
        subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run_parsed(load(args[0]), subparser, parsed)
