"""A real single-node SLURM cluster for the tests marked `slurm`, up for the whole session.

The fixture runs slurm-up.sh (installing the packages with apt-get when they are missing) and
slurm-down.sh at the end. It skips, with the reason, off Linux, when not root, or when the packages
are missing and apt-get is not there. A cluster that is already up is used and left running.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
UP_TIMEOUT_S = 600  # a first bring-up may download ~31 MB of packages


def _skip_reason() -> str:
    if platform.system() != "Linux":
        return f"the local SLURM cluster needs Linux, this is {platform.system()}"
    if os.geteuid() != 0:
        return "starting the SLURM daemons needs root"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available to install it"
    return ""


def _already_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    return "UP" in ping.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """Yields the seconds the bring-up took (0.0 for a cluster that was already up)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if _already_up():
        yield 0.0
        return
    start = time.monotonic()
    up = subprocess.run([str(HERE / "slurm-up.sh")], capture_output=True, text=True, timeout=UP_TIMEOUT_S)
    took = time.monotonic() - start
    try:
        if up.returncode != 0:
            pytest.fail(f"slurm-up.sh failed (rc={up.returncode}):\n{up.stderr[-3000:]}")
        print(f"\nslurm-up.sh: {took:.1f} s\n{up.stderr}")
        yield took
    finally:
        down = subprocess.run([str(HERE / "slurm-down.sh")], capture_output=True, text=True, timeout=120)
        print(f"\nslurm-down.sh (rc={down.returncode}):\n{down.stderr}")
