"""`result.json`: the file a finished run leaves last (the runner writes it), its name and its reader;
and the one-line summary of the `failed.json` a failed run leaves instead.

A light module on purpose: the sweep's status and the results table read it without importing
torch or the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from mardini_bench.io import DamagedFileError, load_json

RESULT = "result.json"
# the cost fields result.json carries (`cost.run_cost` measures them)
COST_KEYS = ("params_planner", "params_generator", "flops_train_step", "flops_sample", "latency_sample_s",
             "peak_mem_mb")


def failure_summary(failed: Dict[str, Any]) -> str:
    """'Type: message' from a run's failed.json. One without a message is the job's started.json renamed,
    because not even failed.json could be written (a full disk): the reason is in the job's log."""
    if "message" not in failed:
        return "its error could not be written to failed.json (disk full?); see the job's log, submitit.err"
    return f"{failed.get('type', 'Error')}: {failed['message']}"


def load_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    """result.json as written by the runner, or None when absent; `DamagedFileError` when truncated
    or wrong-typed (records not a list of {task, method, metric} objects, train/cost/config not objects)."""
    path = run_dir / RESULT
    try:
        result = load_json(path)
    except FileNotFoundError:
        return None
    for key in ("train", "cost", "config"):
        if not isinstance(result.get(key, {}), dict):
            raise DamagedFileError(f"{path}: '{key}' must be a JSON object, got {result[key]!r:.40}")
    records = result.get("records", [])
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"task", "method", "metric"} <= set(r)
                                                for r in records):
        raise DamagedFileError(f"{path}: 'records' must be a list of objects with task, method and metric")
    return result
