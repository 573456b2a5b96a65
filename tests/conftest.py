"""Shared fixtures. Files from the project's shared folder (real clips, weights, golden values) are
found through MARDINI_BENCH_SHARED (default: ../shared beside the checkout); tests that need them
skip with the reason when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MARDINI_BENCH_SHARED", REPO.parent / "shared"))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set MARDINI_BENCH_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED, "shared folder")


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return _need(SHARED / "weights", "pretrained weights folder")


@pytest.fixture(scope="session")
def real_clips_dir() -> Path:
    return _need(SHARED / "data" / "real_clips", "real video clips")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(SHARED / "golden", "golden metric values")


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores: keep tests deterministic and stop oversubscription when pytest runs one process.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture()
def one_thread(monkeypatch):
    """Small tensors: one thread avoids OpenMP oversubscription on a busy 2-core machine. The runner
    sets its own thread count from $MARDINI_BENCH_THREADS, so that says one too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("MARDINI_BENCH_THREADS", "1")
    yield
    torch.set_num_threads(threads)
