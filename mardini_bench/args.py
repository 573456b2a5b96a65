"""argparse with the toolkit's error form, and the shape of a command.

A bad flag or value is one `error: ...` line and exit 2. A command is a `Command`: a function that adds
its arguments to a parser it is given, and one that runs the parsed namespace. `mardini-bench <command>`
(cli.py) hangs that parser in its tree; the command's `python -m` form builds it alone (`command_main`);
both from the one function, so the two forms cannot drift apart. The benchmarks' scripts use the same
parser and the same flags (`add_overrides`, `add_threads`, `add_device`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, NoReturn, Optional, Sequence, Tuple


class UsageError(Exception):
    """Arguments that parse but do not go together (`params` with neither a preset nor --all): reported as
    the parser's own error line."""


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line naming the fault and where help is, instead
    of the usage block followed by the message. With `intermixed`, options may come between positionals
    (`GRID key=v --dry-run key=w`), also when the parser is a subcommand of another."""

    def __init__(self, *args, intermixed: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self._intermixing = False

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (options: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    def parse_known_args(self, args: Optional[Sequence[str]] = None,
                         namespace: Optional[argparse.Namespace] = None) -> Tuple[argparse.Namespace, List[str]]:
        # a parent parser hands a subcommand its arguments through this method, so intermixing lives here
        if not self.intermixed or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into this method
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


@dataclass(frozen=True)
class Command:
    """One command: `add_arguments(parser)` defines its arguments, `run(args)` does the work and returns the
    exit code (None: 0). `run` raises `UsageError` for arguments that do not go together."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Optional[int]]
    description: str


def run_parsed(command: Command, parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`command.run(args)` as an exit code; a `UsageError` is `parser`'s error line."""
    try:
        return int(command.run(args) or 0)
    except UsageError as err:
        parser.error(str(err))


def command_parser(command: Command, prog: str) -> ArgumentParser:
    """The command's parser alone, under the name `prog`."""
    parser = ArgumentParser(prog=prog, description=command.description)
    command.add_arguments(parser)
    return parser


def command_main(command: Command, argv: Optional[Sequence[str]], prog: str) -> int:
    """`prog ARGV...` (argv None: the process's arguments) parsed and run: the `main` of each
    `python -m mardini_bench.X` form."""
    parser = command_parser(command, prog)
    return run_parsed(command, parser, parser.parse_args(argv))


def script_parser(path: str, doc: str) -> ArgumentParser:
    """The parser of a script run as `python FOLDER/NAME.py` (a benchmark): named so in its errors and usage,
    described by the first line of `doc` (the script's docstring)."""
    script = Path(path)
    return ArgumentParser(prog=f"python {script.parent.name}/{script.name}", description=doc.strip().splitlines()[0])


def add_overrides(parser: argparse.ArgumentParser,
                  help: str = "dotted run-config overrides, e.g. model=tiny train.steps=50") -> None:
    """The positional `overrides` (`key=value ...`), which may come before, between or after the options."""
    parser.add_argument("overrides", nargs="*", help=help)
    parser.intermixed = True


def add_threads(parser: argparse.ArgumentParser) -> None:
    """`--threads N`: torch's threads (`runtime.configure_threads`; None: $MARDINI_BENCH_THREADS, else the cores)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: $MARDINI_BENCH_THREADS, else $OMP_NUM_THREADS, else every core)")


def add_device(parser: argparse.ArgumentParser) -> None:
    """`--device`: where it runs (`runtime.Runtime.resolve`; None: $MARDINI_BENCH_DEVICE, else CUDA when present)."""
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: $MARDINI_BENCH_DEVICE, else CUDA when present)")
