"""The module structure: the package laid out as the pipeline, every module imports on its own, no import
cycles, run folders stay in sweep/, and the light commands load no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mardini_bench", "models", "tasks")

# The top level of mardini_bench/: the vocabulary every stage shares, and nothing else. The code of a
# stage lives in its folder; a new module goes there, not beside these.
VOCABULARY = {
    "__init__", "registry", "config", "presets", "factory",  # registries, configs, presets, config -> model
    "io",  # the one atomic write, JSON read-write, file lock
    "runtime",  # the device, dtype, threads and loader workers a run executes with
    "args", "cli",  # argparse with one-line errors; `mardini-bench <command>`
    "weights", "weight_conversion",  # weight files: found, verified, fetched (metrics and codecs read them)
}
# `python -m mardini_bench.X` forms kept where X moved into a stage: X.py only forwards to the main of this
# module, whose name differs from X (neither shadows the other).
ENTRY_MODULES = {
    "runner": "mardini_bench.run.one_run",
    "report": "mardini_bench.analysis.sweep_report",
    "params": "mardini_bench.cost.param_counts",
}
# One folder per pipeline stage, in the order data flows.
STAGES = ("data", "run", "metrics", "sweep", "cost", "analysis")
# Commands that must start without torch (and the modules they read result.json and run folders with).
LIGHT = ("mardini_bench.cli", "mardini_bench.sweep.__main__", "mardini_bench.run.result_file", "mardini_bench.run.state",
         "mardini_bench.analysis.results")


def modules() -> Dict[str, Path]:
    """Dotted name -> file of every module of the three packages (entry points `__main__` left out)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def ancestors(name: str) -> List[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported(name: str, path: Path, known: Dict[str, Path]) -> Set[str]:
    """Project modules that `name` imports anywhere in its file (inside functions too).

    Importing `a.b.c` runs `a` and `a.b` first, so those count too, except the packages `name` itself
    lives in (they are being imported already when `name` runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub; `from mod import obj` imports mod
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate:
                targets.update(t for t in [candidate, *ancestors(candidate)] if t in known)
    mine = set(ancestors(name)) | {name, package}
    return {t for t in targets if t not in mine}


def import_graph() -> Dict[str, Set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_through_imports_inside_functions():
    assert cycles(import_graph()) == []


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_sweep_reads_and_writes_run_folders():
    outside = {(name, target) for name, targets in import_graph().items() for target in targets
               if target.startswith("mardini_bench.sweep") and not name.startswith("mardini_bench.sweep")}
    assert outside == set()


def test_models_and_tasks_use_only_the_vocabulary():
    # the networks and the task masks are what every stage builds on; they reach no stage's code
    stage = {(name, target) for name, targets in import_graph().items() for target in targets
             if name.split(".")[0] in ("models", "tasks") and target.startswith("mardini_bench.")
             and target.split(".")[1] in STAGES}
    assert stage == set()


def test_analysis_is_the_top_stage():
    # tables, tests and plots read what the other stages wrote; no stage's library code reads them back
    # (a command's entry point, `__main__`, may dispatch to analysis: it is not in the graph)
    below = {(name, target) for name, targets in import_graph().items() for target in targets
             if name.startswith("mardini_bench.") and name.split(".")[1] in STAGES
             and name.split(".")[1] != "analysis" and target.startswith("mardini_bench.analysis")}
    assert below == set()


def test_registries_models_and_tasks_use_load_only_core_modules():
    """A registry imports the modules it names on first lookup: a model that looks an entry up runs them.
    The registries models/ and tasks/ read must name only models/, tasks/ and the vocabulary (a string
    import of a stage module would hide from the import graph)."""
    from mardini_bench import registry

    used = set()
    for name, path in modules().items():
        if name.split(".")[0] in ("models", "tasks"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "mardini_bench.registry":
                    used |= {alias.name for alias in node.names if alias.name.isupper()}
    assert {"BASELINES", "TASKS", "PLANNERS"} <= used  # the walk sees the imports
    staged = {(kind, module) for kind in sorted(used) if isinstance(getattr(registry, kind), registry.Registry)
              for module in getattr(registry, kind)._modules
              if module.startswith("mardini_bench.") and module.split(".")[1] in STAGES}
    assert staged == set()


def test_every_module_imports_on_its_own():
    """Each module imported with no other project module loaded first (third-party ones stay cached:
    what could break is our own import order)."""
    names = sorted(modules())
    script = (
        "import importlib, sys, traceback\n"
        f"names, roots = {names!r}, {PACKAGES!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in roots]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    assert len(names) > 50  # the walk found the packages


def test_every_command_of_the_tree_is_a_command_in_its_stage():
    """`mardini-bench`'s table names each command's `args.Command` as "module:attribute", without importing it;
    each names a real one, and the console script is the tree."""
    from mardini_bench.args import Command
    from mardini_bench.cli import COMMANDS, load

    for name, entry in COMMANDS.items():
        module = entry.command.partition(":")[0]
        assert (REPO / (module.replace(".", "/") + ".py")).exists(), name
        assert isinstance(load(name), Command), name
        assert entry.alias.startswith("python -m mardini_bench"), name
    assert 'mardini-bench = "mardini_bench.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_top_level_holds_only_the_vocabulary_and_entry_modules():
    package = REPO / "mardini_bench"
    modules_here = {p.stem for p in package.glob("*.py")}
    assert modules_here - VOCABULARY - set(ENTRY_MODULES) == set(), "a new module belongs in a stage folder"
    assert VOCABULARY | set(ENTRY_MODULES) <= modules_here  # the lists say what is there
    folders = {p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(STAGES)
    assert all((package / stage / "__init__.py").exists() for stage in STAGES)
    # an entry module's name is nowhere else in the package: `runner` is not also run/runner.py
    stems = {p.stem for stage in STAGES for p in (package / stage).glob("*.py")}
    assert stems & set(ENTRY_MODULES) == set()


def test_entry_modules_only_forward_main():
    """Each is a docstring, `from <stage module> import main` and the `__main__` guard: no code of its own."""
    for name, target in ENTRY_MODULES.items():
        path = REPO / "mardini_bench" / f"{name}.py"
        body = ast.parse(path.read_text()).body
        assert isinstance(body[0], ast.Expr) and target.replace(".", "/") in body[0].value.value, name
        imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert [(n.module, [a.name for a in n.names]) for n in imports] == [(target, ["main"])], name
        assert len(body) == 3 and isinstance(body[2], ast.If), name
        assert "def main(" in (REPO / (target.replace(".", "/") + ".py")).read_text(), name


def test_light_commands_load_no_torch():
    """`mardini-bench --help`, the sweep's status/collect and result.json's reader start in a fraction of
    a second: torch (seconds to import) stays out of them."""
    script = (
        "import importlib, sys\n"
        f"for name in {LIGHT!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
