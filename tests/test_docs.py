"""The README stays a user's guide: short, with the two commands users and CI copy, verbatim."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
QUICKSTART = ('python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && '
              '.venv/bin/python -m mardini_bench.weights fetch && '
              '.venv/bin/python -m mardini_bench.sweep ablations/quickstart.toml')


def test_readme_is_at_most_250_lines():
    """The experiment record lives in docs/results.md, the rationale in docs/design.md (issue #33)."""
    assert len(README.splitlines()) <= 250


def test_readme_holds_the_quickstart_and_the_ci_test_command_verbatim():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]  # its last line is the command
    assert blocks[:2] == [QUICKSTART, ci_command]
