"""`status SWEEP_DIR`: each run's state from its folder, with the scheduler's view as extra detail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from mardini_bench.sweep import rundir
from mardini_bench.sweep.grid import GridError
from mardini_bench.sweep.plan import MANIFEST
from mardini_bench.sweep.scheduler import slurm_states


@dataclass(frozen=True)
class RunStatus:
    idx: int
    run_id: str
    state: str  # one of rundir.STATES
    detail: str  # failure message, or why a RUNNING run may not be running
    scheduler: str  # "slurm 12_3: RUNNING", "" when unknown
    overrides: str


def manifest(sweep_dir: Path) -> Dict[str, Any]:
    """sweep.json, checked: its `points` are what status reports on."""
    try:
        return rundir.read_manifest(sweep_dir)
    except FileNotFoundError:
        raise GridError(f"'{sweep_dir}' is not a sweep folder (no {MANIFEST})") from None
    except rundir.DamagedFileError as err:
        raise GridError(f"{err}; launch the sweep again to rewrite it") from None


def sweep_status(sweep_dir: Path) -> List[RunStatus]:
    """One `RunStatus` per point of the sweep's latest launch."""
    points = manifest(sweep_dir)["points"]
    submitted = {p["run_id"]: rundir.read_json(sweep_dir / p["run_id"] / rundir.SUBMITTED) or {} for p in points}
    slurm_ids = [s.get("job_id") for s in submitted.values() if s.get("cluster") == "slurm"]
    queue = slurm_states(slurm_ids)
    rows = []
    for p in points:
        state, detail = rundir.run_state(sweep_dir / p["run_id"])
        job = submitted[p["run_id"]]
        seen = queue.get(job.get("job_id", ""), "")
        scheduler = f"{job['cluster']} {job['job_id']}: {seen}" if seen else ""
        rows.append(RunStatus(p["idx"], p["run_id"], state, detail, scheduler, " ".join(p["overrides"])))
    return rows


def format_status(name: str, rows: List[RunStatus]) -> str:
    counts = ", ".join(f"{sum(r.state == s for r in rows)} {s}" for s in rundir.STATES
                       if any(r.state == s for r in rows))
    lines = [f"sweep {name}: {len(rows)} runs: {counts}"]
    for r in rows:
        extra = "; ".join(x for x in (r.detail.splitlines()[0] if r.detail else "", r.scheduler) if x)
        lines.append(f"#{r.idx} {r.run_id} {r.state:<7} {r.overrides}" + (f"  [{extra}]" if extra else ""))
    return "\n".join(lines)
