"""Thread configuration, the matmul peak used for MFU, and the per-host timing lock."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from mardini_bench.cost.perf import (OMP_ENV, THREADS_ENV, available_cores, configure_threads, matmul_peak_flops,
                                 timing_lock)


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_wins_over_env(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "2")
    assert configure_threads(1) == 1


def test_env_then_omp_then_available_cores(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    monkeypatch.setenv(OMP_ENV, "2")
    assert configure_threads() == 1
    monkeypatch.delenv(THREADS_ENV)
    assert configure_threads() == 2  # a local sweep's share of the cores, or torchrun's choice
    monkeypatch.delenv(OMP_ENV)
    assert configure_threads() == available_cores()


@pytest.mark.parametrize("name", [THREADS_ENV, OMP_ENV])
@pytest.mark.parametrize("bad", ["two", "0"])
def test_bad_env_names_the_variable(monkeypatch, name, bad):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setenv(name, bad)
    with pytest.raises(ValueError, match=rf"\${name}=.*positive integer"):
        configure_threads()


def test_matmul_peak_is_a_rate():
    assert matmul_peak_flops(size=128, repeats=2) > 1e6


def test_timing_lock_makes_a_second_timer_wait(tmp_path):
    # Two runs on one host: the second may only time once the first has finished timing.
    acquired = []

    def second():
        with timing_lock("t", tmp_path):
            acquired.append(time.monotonic())

    with timing_lock("t", tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert not acquired
        released = time.monotonic()
    thread.join(5)
    assert acquired and acquired[0] >= released
