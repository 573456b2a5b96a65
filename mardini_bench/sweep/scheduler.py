"""What SLURM says about recorded job ids: extra information beside the run folders, never a verdict."""

from __future__ import annotations

import subprocess
from typing import Dict, Iterable, List

# Job states in which the job may still (re)start and write into its run folder.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "PREEMPTED"}


def _lines(cmd: List[str]) -> List[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):  # no SLURM client here: nothing to add
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def slurm_states(job_ids: Iterable[str]) -> Dict[str, str]:
    """{job id: state} from squeue (jobs in the queue, array tasks expanded), then sacct (finished)."""
    wanted = {j for j in job_ids if j}
    if not wanted:
        return {}
    states: Dict[str, str] = {}
    for line in _lines(["squeue", "-h", "-r", "-o", "%i|%T"]):
        job, _, state = line.partition("|")
        if job in wanted:
            states[job] = state
    rest = sorted(wanted - set(states))
    if rest:
        for line in _lines(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(rest)]):
            job, _, state = line.partition("|")
            if job in wanted:
                states[job] = state.split()[0] if state else state  # "CANCELLED by 0" -> CANCELLED
    return states
