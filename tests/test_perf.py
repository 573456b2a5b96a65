"""Thread configuration and the matmul peak used for MFU."""

from __future__ import annotations

import pytest
import torch

from mardini_bench.perf import THREADS_ENV, available_cores, configure_threads, matmul_peak_flops


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_wins_over_env(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "2")
    assert configure_threads(1) == 1


def test_env_then_available_cores(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert configure_threads() == 1
    monkeypatch.delenv(THREADS_ENV)
    assert configure_threads() == available_cores()


@pytest.mark.parametrize("bad", ["two", "0"])
def test_bad_env_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv(THREADS_ENV, bad)
    with pytest.raises(ValueError, match=r"MARDINI_BENCH_THREADS=.*positive integer"):
        configure_threads()


def test_matmul_peak_is_a_rate():
    assert matmul_peak_flops(size=128, repeats=2) > 1e6
