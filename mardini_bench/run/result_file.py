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
RECORD_KEYS = ("task", "method", "metric")  # what one record scores: one value per combination
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
    """result.json as written by the runner, or None when absent; `DamagedFileError` naming the file and
    the fault when it is truncated or not what the runner writes: another run's result, train/cost/config
    not objects, or a record (`check_record`) that is not one scored value."""
    path = run_dir / RESULT
    try:
        result = load_json(path)
    except FileNotFoundError:
        return None
    if result.get("run_id", run_dir.name) != run_dir.name:  # copied in from another run's folder
        raise DamagedFileError(f"{path}: holds the result of run {result['run_id']!r:.40}, not of {run_dir.name!r}")
    for key in ("train", "cost", "config"):
        if not isinstance(result.get(key, {}), dict):
            raise DamagedFileError(f"{path}: '{key}' must be a JSON object, got {result[key]!r:.40}")
    records = result.get("records", [])
    if not isinstance(records, list):
        raise DamagedFileError(f"{path}: 'records' must be a list of objects with task, method and metric")
    seen = set()
    for i, record in enumerate(records):
        key = check_record(record, f"{path}: records[{i}]")
        if key in seen:
            raise DamagedFileError(f"{path}: records[{i}] scores {'/'.join(key)} a second time")
        seen.add(key)
    return result


def check_record(record: Any, where: str) -> tuple:
    """(task, method, metric) of one result record: an object naming them as strings, whose 'value' is a
    number, or null for a value that could not be computed (JSON has no NaN)."""
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in RECORD_KEYS):
        raise DamagedFileError(f"{where}: must be an object with task, method and metric (strings), got {record!r:.60}")
    value = record.get("value", ...)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        shown = "nothing (no 'value')" if value is ... else f"{value!r:.40}"
        raise DamagedFileError(f"{where}: 'value' must be a number or null, got {shown}")
    return tuple(record[k] for k in RECORD_KEYS)
