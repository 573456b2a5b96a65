"""argparse with the toolkit's error form: a bad flag or value is one `error: ...` line and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose errors are one line naming the fault and where help is, instead
    of the usage block followed by the message."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (options: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
