"""Shared command-line plumbing: user errors become one `error: ...` line and exit code 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable, NoReturn, Tuple, Type

from mardini_bench.config import ConfigError
from mardini_bench.registry import UnknownComponentError
from mardini_bench.sweep.rundir import DamagedFileError
from mardini_bench.weights import WeightsError

USER_ERRORS: Tuple[Type[BaseException], ...] = (ConfigError, UnknownComponentError, WeightsError, DamagedFileError)


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

        return run

    return wrap
