"""The runtime: device, autocast dtype, threads and loader workers, resolved once per run."""

from __future__ import annotations

import pytest
import torch

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.runtime import (DEVICE_ENV, OMP_ENV, THREADS_ENV, WORKERS_ENV, Runtime, RuntimeSettingError,
                                   available_cores, check_environment, configure_threads)

CLEAN = {}  # an environment with none of the variables set


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
@pytest.mark.parametrize("bad", ["two", "0", "-3", "1.5"])
def test_bad_thread_env_names_the_variable(name, bad):
    with pytest.raises(RuntimeSettingError, match=rf"\${name}='{bad}': must be a positive whole number"):
        check_environment({name: bad})


@pytest.mark.parametrize("env, message", [
    ({DEVICE_ENV: "gpu"}, "not a device; valid: cpu, cuda"),
    ({DEVICE_ENV: "cuda:7"}, "valid: cpu"),  # this machine (CI) has no CUDA device
    ({WORKERS_ENV: "many"}, "must be a whole number >= 0"),
    ({WORKERS_ENV: "-1"}, "must be a whole number >= 0"),
])
def test_bad_device_and_worker_env_is_refused_before_any_work(env, message):
    if torch.cuda.is_available() and env.get(DEVICE_ENV) == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    with pytest.raises(RuntimeSettingError, match=message):
        check_environment(env)


def test_resolve_defaults_to_cuda_when_present_and_takes_overrides():
    rt = Runtime.resolve(environ=CLEAN)
    assert rt.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert Runtime.resolve(environ={DEVICE_ENV: "cpu"}).device == torch.device("cpu")
    assert Runtime.resolve(device="meta", environ={DEVICE_ENV: "cpu"}).device == torch.device("meta")


def test_cpu_keeps_fp32_and_no_workers_while_cuda_gets_bf16_and_workers():
    cfg = RunConfig()
    cpu = Runtime.resolve(cfg, device="cpu", environ=CLEAN)
    assert cpu.dtype is None and cpu.workers == 0
    assert Runtime.resolve(apply_overrides(cfg, ["train.precision=bf16"]), device="cpu", environ=CLEAN).dtype \
        == torch.bfloat16
    assert Runtime.resolve(apply_overrides(cfg, ["data.workers=3"]), device="cpu", environ=CLEAN).workers == 3
    assert Runtime.resolve(cfg, device="cpu", environ={WORKERS_ENV: "2"}).workers == 2


def test_generator_draws_on_the_runtime_device():
    rt = Runtime.resolve(device="cpu", environ=CLEAN)
    a = torch.randn(4, generator=rt.generator(5), device=rt.device)
    assert torch.equal(a, torch.randn(4, generator=torch.Generator().manual_seed(5)))
    assert Runtime.resolve(device="meta", environ=CLEAN).generator(5) is None  # meta draws nothing
