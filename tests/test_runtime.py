"""The runtime: device, autocast dtype, threads and loader workers, resolved once per run."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.registry import BASELINES
from mardini_bench.run import evaluate as evaluate_module
from mardini_bench.run import train as train_module
from mardini_bench.run.distributed import DistEnv
from mardini_bench.run.train import Trainer
from mardini_bench.runtime import (DEVICE_ENV, OMP_ENV, THREADS_ENV, WORKERS_ENV, Runtime, RuntimeSettingError,
                                   available_cores, check_environment, configure_threads)
from models.mardini import MarDini

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


# ----------------------------------------------------------------------------------------------
# Every tensor a step or an evaluation creates lands on the run's device. CI has one device, so these
# run on `meta`: anything made elsewhere (a host-side noise draw, a CPU feature network) shows up.
# ----------------------------------------------------------------------------------------------
class Devices(TorchDispatchMode):
    """Counts the device of every tensor an op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.seen[t.device.type] += 1
        return out


def meta_trainer(tmp_path, monkeypatch, *overrides: str) -> Trainer:
    def build(cfg, device):  # the pixel codec has no weights: the whole model builds on meta
        with torch.device("meta"):
            return MarDini(cfg.model)

    monkeypatch.setattr(train_module, "build_model", build)
    cfg = apply_overrides(RunConfig(), ["model=small", "train.batch_size=4", *overrides])
    return Trainer(cfg, tmp_path, DistEnv(), Runtime.resolve(cfg, device="meta", environ=CLEAN))


@pytest.mark.parametrize("overrides", [[], ["train.micro_batch=2", "train.grad_clip=0"]])
def test_a_training_step_makes_everything_on_the_run_device(tmp_path, monkeypatch, overrides):
    trainer = meta_trainer(tmp_path, monkeypatch, *overrides)
    asked = []
    real = train_module.derived_generator
    monkeypatch.setattr(train_module, "derived_generator",
                        lambda *a, device=None: asked.append(torch.device(device)) or real(*a, device=device))
    video = torch.empty(4, 9, 3, 32, 32, device="meta")
    mask = trainer.masks(0, 9)
    with Devices() as devices:
        stats = trainer.train_step(0, video, mask)
    assert set(devices.seen) == {"meta"}, devices.seen  # noise, timesteps, loss, optimiser and EMA updates
    assert mask.device.type == stats.loss.device.type == stats.grad_norm.device.type == "meta"
    assert asked and set(asked) == {torch.device("meta")}  # masks' and noise's generators


def test_feature_networks_and_samplers_run_on_the_run_device(weights_dir):
    runtime = Runtime.resolve(device="meta", environ=CLEAN)
    cfg = apply_overrides(RunConfig(), ["model=tiny", f"eval.weights={weights_dir}", "eval.batch_size=3"])
    for name in ("fvd", "fid"):
        metric = evaluate_module.build_metric(name, cfg, runtime)
        assert next(metric.net.parameters()).device.type == "meta" and metric.batch_size == 3
    with torch.device("meta"):
        model = MarDini(cfg.model).eval()
    video, mask = torch.empty(2, 9, 3, 32, 32, device="meta"), torch.ones(2, 9, dtype=torch.bool, device="meta")
    evaluate_module.generate(evaluate_module.model_sampler(model, 0, "interpolation", runtime), video, mask, 2)  # plans
    with Devices() as devices:
        out = evaluate_module.generate(evaluate_module.model_sampler(model, 0, "interpolation", runtime), video, mask, 1)
        blend = evaluate_module.generate(lambda v, m: BASELINES.get("linear_blend")(v, m, validate=False), video, mask, 2)
    assert out.device.type == blend.device.type == "meta" and set(devices.seen) == {"meta"}


def test_evaluation_moves_clips_and_masks_to_the_run_device_once(tmp_path, monkeypatch):
    runtime = Runtime.resolve(device="meta", environ=CLEAN)
    cfg = apply_overrides(RunConfig(), ["model=tiny", "eval.num_videos=2", "eval.metrics=[psnr]"])
    received = []
    monkeypatch.setattr(evaluate_module, "build_shared",
                        lambda cfg, prepared, run_dir, rt: received.extend(t.device for _, r, m in prepared for t in (r, m)))
    monkeypatch.setattr(evaluate_module, "generate", lambda fn, v, m, b: received.extend((v.device, m.device)) or v)
    monkeypatch.setattr(evaluate_module, "save_samples", lambda *a: None)
    monkeypatch.setattr(evaluate_module, "score", lambda cfg, task, method, real, fake, *a: received.extend(
        (real.device, fake.device)) or [])
    monkeypatch.setattr(evaluate_module, "baseline_records", lambda *a, runtime=None: received.append(
        runtime.device) or [])
    with torch.device("meta"):
        model = MarDini(cfg.model).eval()
    evaluate_module.evaluate(model, cfg, tmp_path / "sweep" / "run", runtime)
    assert len(received) == 3 * 2 + 3 * (2 + 2 + 2) and {d.type for d in received} == {"meta"}
