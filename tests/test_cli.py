"""`mardini-bench <command>`: one argparse tree. `--help` lists every command, each command's `--help` works,
each `python -m mardini_bench.X` form is the same parser under its old name, and every form the README
names still parses its arguments."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import pytest

from mardini_bench import args as args_module
from mardini_bench import cli
from mardini_bench.cli import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[1]
NESTED = {"data": ["info", "build-davis7", "build-ucf101-7", "stats"], "cost": ["table3", "memory"],
          "weights": ["fetch", "verify"]}
HELPS = [[name] for name in COMMANDS] + [[name, sub] for name, subs in NESTED.items() for sub in subs]
# `python -m mardini_bench.X ARGS` in the docs; ARGS end at a comment, a backtick, `&&` or a line break. A
# form inside backticks is prose (`--gpus N`: placeholders); one on a command line of its own is run as written.
DOC_FORM = re.compile(r"(`?)python -m (mardini_bench(?:\.\w+)+)([^\n`#&\\]*)")
DOCS = ("README.md", "docs/design.md", "docs/results.md")


def form_main(module: str) -> Callable:
    """The `main` that `python -m module` runs."""
    found = importlib.import_module(module)
    return getattr(found, "main", None) or importlib.import_module(f"{module}.__main__").main


def help_of(main_fn: Callable, argv: List[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main_fn([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.fixture
def parsed(monkeypatch) -> List[argparse.Namespace]:
    """The namespaces the commands would run with: parsing only, nothing runs."""
    seen: List[argparse.Namespace] = []

    def record(command, parser, namespace):
        seen.append(namespace)
        return 0

    monkeypatch.setattr(args_module, "run_parsed", record)
    monkeypatch.setattr(cli, "run_parsed", record)
    return seen


def test_help_lists_every_command_and_its_python_m_form(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, entry in COMMANDS.items():
        assert re.search(rf"^    {re.escape(name)} +{re.escape(entry.help)}$", out, re.M), name
        assert f"  {name:<11} {entry.alias}\n" in out, name
    assert main([]) == 0 and capsys.readouterr().out == out


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_each_command_help_exits_0(argv, capsys):
    assert help_of(main, argv, capsys).startswith(f"usage: mardini-bench {' '.join(argv)} ")


def test_the_nested_commands_above_are_all_of_them():
    for name in COMMANDS:
        actions = build_parser(name)[1]._actions
        nested = [sorted(a.choices) for a in actions if isinstance(a, argparse._SubParsersAction)]
        assert nested == ([sorted(NESTED[name])] if name in NESTED else []), name


@pytest.mark.parametrize("name", COMMANDS)
def test_the_python_m_form_is_the_same_parser(name, capsys):
    """Each form's `--help` is `mardini-bench NAME --help` but for the program name in its usage."""
    module, *prefix = COMMANDS[name].alias.split()[2:]
    tree = help_of(main, [name], capsys)
    alias = help_of(form_main(module), prefix, capsys)
    assert alias.startswith(f"usage: {COMMANDS[name].alias} ")
    assert alias.split("\n\n", 1)[1] == tree.split("\n\n", 1)[1]


def test_every_python_m_form_in_the_docs_exists_and_parses_its_arguments(parsed):
    """The docs name commands as `python -m mardini_bench.X ARGS`: each still runs, and each shown as a command
    line parses the arguments written beside it (up to an optional `[...]` part)."""
    text = "".join((REPO / doc).read_text() for doc in DOCS if (REPO / doc).exists())
    forms = DOC_FORM.findall(text)
    named = {name for _, name, _ in forms}
    assert {"mardini_bench.runner", "mardini_bench.report", "mardini_bench.params", "mardini_bench.sweep"} <= named
    for name in sorted(named):
        path = REPO / name.replace(".", "/")
        runnable = path.with_suffix(".py").exists() or (path / "__main__.py").exists()
        assert runnable and importlib.util.find_spec(name) is not None, name
    lines = [(name, rest) for prose, name, rest in forms if not prose and rest.strip()]
    for name, rest in lines:
        argv = list(itertools.takewhile(lambda token: not token.startswith("["), shlex.split(rest)))
        assert form_main(name)(argv) == 0, f"python -m {name} {rest}"
    assert len(parsed) == len(lines) > 15


def test_overrides_may_sit_among_the_options(parsed):
    for main_fn, argv in [(main, ["sweep", "g.toml", "--results", "r", "a=1", "--dry-run", "b=2"]),
                          (form_main("mardini_bench.sweep"), ["g.toml", "a=1", "--dry-run", "b=2"]),
                          (main, ["cost", "memory", "tiny", "--gpus", "2", "a=1", "--json", "b=2"]),
                          (form_main("mardini_bench.runner"), ["runs/x", "a=1", "b=2"])]:
        assert main_fn(argv) == 0
        assert parsed[-1].overrides == ["a=1", "b=2"], argv
    assert parsed[0].dry_run and parsed[0].results == "r" and parsed[2].gpus == 2


@pytest.mark.parametrize("argv, needle", [
    (["params", "--bogus"], "error: unrecognized arguments: --bogus (options: mardini-bench params --help)"),
    (["params"], "error: give a preset name or --all (options: mardini-bench params --help)"),
    (["cost", "memory", "tiny", "--gpus", "x"], "(options: mardini-bench cost memory --help)"),
    (["sweeep"], "error: unknown command 'sweeep'; valid: sweep, status, collect"),
])
def test_a_bad_command_line_is_one_line_naming_the_parser(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_the_script_lists_every_command_without_loading_torch():
    """As a process: `mardini-bench --help`, and a light command's help, import no torch."""
    script = ("import sys\nfrom mardini_bench.cli import main\ncode = main(['--help'])\n"
              "try:\n    main(['status', '--help'])\nexcept SystemExit as exit_:\n    code += exit_.code\n"
              "print('torch' in sys.modules, code)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False 0"
    assert all(f"    {name} " in done.stdout for name in COMMANDS)
    assert "usage: mardini-bench status [-h] sweep_dir" in done.stdout


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py")))
def test_every_benchmark_uses_the_same_parser(script, capsys):
    """The scripts' flags follow the commands' (`--threads`, `--device`, dotted overrides among the options),
    from the same helpers, and a bad flag is the same one line."""
    path = REPO / "benchmarks" / script
    assert "argparse.ArgumentParser(" not in path.read_text() and "script_parser(__file__, __doc__)" in path.read_text()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert help_of(module.main, [], capsys).startswith(f"usage: python benchmarks/{script} ")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err  # bench_fvd names its missing --weights first
    assert err.startswith("error: ") and err.count("\n") == 1
    assert err.endswith(f" (options: python benchmarks/{script} --help)\n")
