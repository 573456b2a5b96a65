"""The matmul peak used for MFU, and the per-host timing lock."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from mardini_bench.cost.perf import matmul_peak_flops, timing_lock


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
