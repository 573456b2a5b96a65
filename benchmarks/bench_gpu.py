"""One GPU, used fully: training, evaluation and paper-width figures of this code on one device.

    python benchmarks/bench_gpu.py                         # the CUDA device (sized to finish within 8 minutes)
    python benchmarks/bench_gpu.py --golden GOLDEN_DIR --out gpu.jsonl
    python benchmarks/bench_gpu.py --device cpu --smoke    # tiny sizes in seconds (the test suite runs it)

Every figure is printed as it is measured, beside the figure measured on one H200 before this code
("before": the landed trainer, evaluation and estimator of the earlier release), and, where it is
cheap, beside a baseline measured in the same run. `--out` appends one JSON line per figure.

Sections (`--sections`, default all):
  train     `small` clips/s at batch 64 and 256, data included (the trainer's own loop: the split
            held on the device, masks and noise drawn there, loss read every log step) and excluded
            (one batch reused); eager, and compiled where the device compiles. Same run baseline:
            the earlier step, per-parameter AdamW and EMA, a host read every step, noise drawn on
            the host, clips rendered in the main process
  launches  CUDA kernel launches per training step and the fraction of the step the GPU is busy;
            aten ops per step on every device (the CPU measure of the same overhead)
  eval      one run's evaluation, 3 tasks x 256 clips with FVD, PSNR and SSIM and both baselines;
            I3D clips/s on the device, beside the CPU in the same run
  golden    FVD and FID of the golden videos on the device against their reference values
            (`--golden` folder: golden_small.json and golden_small_inputs.npz)
  paper     MarDini-S widths, 2+2 blocks, 256², 9 frames (benchmarks/bench_paper_scale.py): MFU
            against the measured bf16 peak; CUDA max allocated against `cost memory`'s estimate at
            micro-batch 1 and 4, with and without activation checkpointing
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_paper_scale beside this file
from bench_paper_scale import paper_step  # noqa: E402

from mardini_bench.args import add_device, script_parser  # noqa: E402
from mardini_bench.config import RunConfig, apply_overrides  # noqa: E402
from mardini_bench.data import build_dataset  # noqa: E402
from mardini_bench.factory import build_model  # noqa: E402
from mardini_bench.metrics import FID, FVD  # noqa: E402
from mardini_bench.registry import METRICS  # noqa: E402
from mardini_bench.run.distributed import DistEnv  # noqa: E402
from mardini_bench.run.evaluate import evaluate  # noqa: E402
from mardini_bench.run.train import STREAM_MASK, STREAM_NOISE, Trainer, derived_generator, ema_decay_at  # noqa: E402
from mardini_bench.runtime import Runtime  # noqa: E402
from mardini_bench.weights import WeightsError, resolve_weights  # noqa: E402
from models.masks import build_mask_schedule  # noqa: E402

SECTIONS = ("train", "launches", "eval", "golden", "paper")
GIB = 2 ** 30

# Measured on one H200 (torch 2.11, bf16 autocast) with the earlier release; the profile's step
# times exclude data ("without"), its whole-loop times include rendering and startup ("with"). The
# paper-width figures ran the pixel codec's 64 x 64 latent grid at 256², not the paper's 32 x 32.
BEFORE = {
    "train_64_without": 64 / 0.0880, "train_256_without": 256 / 0.1552,
    "train_64_with": 64 / 0.1608, "train_256_with": 256 / 0.3912,
    "launches": 2700, "busy": 28 / 88, "aten_cpu_b8": 19169,
    "eval_s": None,  # 64 clips x 3 tasks had not finished after 330 s
    "i3d": 81.2, "mfu_mb1": 0.327, "mfu_mb4_ckpt": 0.318,
    "mem_ratio_mb1": 25.31 / 9.48, "mem_ratio_mb4_ckpt": 36.75 / 10.75,
}
TARGETS = {"train_256_with": 10_000, "eval_s": 30.0, "i3d": 1000.0, "golden": 1e-4, "mfu": 0.45, "mem": 0.15}


class Report:
    """Prints each figure as it comes, with what it is compared to; appends JSON lines to `out`."""

    def __init__(self, out: Optional[Path]) -> None:
        self.out, self.start, self.figures = out, time.perf_counter(), []

    def section(self, title: str) -> None:
        print(f"\n[{time.perf_counter() - self.start:5.0f}s] {title}", flush=True)

    def figure(self, name: str, value: Optional[float], unit: str, before: Optional[float] = None,
               target: Optional[str] = None, met: Optional[bool] = None, note: str = "") -> None:
        shown = "n/a" if value is None else (f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}")
        parts = [f"  {name:<46} {shown:>12} {unit:<9}"]
        if before is not None:
            parts.append(f"before {before:.4g}" + (f" ({value / before:.1f}x)" if value and before else ""))
        if target is not None:
            parts.append(f"target {target}" + ("" if met is None else (" met" if met else " MISSED")))
        print("  ".join(parts) + (f"  {note}" if note else ""), flush=True)
        row = {"name": name, "value": value, "unit": unit, "before": before, "target": target, "met": met, "note": note}
        self.figures.append(row)
        if self.out is not None:
            with open(self.out, "a") as f:
                f.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
SMOKE_DATA = ["model=tiny", "data.num_train=16", "data.resolution=16", "data.frames=5"]


def small_config(batch: int, steps: int, smoke: bool, *extra: str) -> RunConfig:
    preset = SMOKE_DATA if smoke else ["model=small"]
    return apply_overrides(RunConfig(), [*preset, f"train.batch_size={batch}", f"train.steps={steps}",
                                         "train.checkpoint_every=1000000", *extra])


def trainer_rate(runtime: Runtime, cfg: RunConfig, warmup: int, with_data: bool) -> Dict[str, float]:
    """Clips/s of the trainer's step over `cfg.train.steps - warmup` steps after `warmup`: with data the
    trainer's own batches (the resident split), without one batch reused; the loss is read at log steps."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), DistEnv(), runtime)
        start = time.perf_counter()
        batches = trainer.batches(cfg.train.steps)
        video = next(batches)
        ready_s = time.perf_counter() - start  # building the resident split (once per run)
        timed = 0.0
        for step in range(cfg.train.steps):
            if step == warmup:
                runtime.synchronize()
                timed = time.perf_counter()
            if with_data and step:
                video = next(batches)
            trainer.pending.append(trainer.train_step(step, video, trainer.masks(step, video.shape[1])))
            trainer.step = step + 1
            if trainer._logs(step):
                trainer.settle()
        trainer.settle()
        runtime.synchronize()
        seconds = time.perf_counter() - timed
    return {"clips_s": cfg.train.batch_size * (cfg.train.steps - warmup) / seconds, "ready_s": ready_s}


def earlier_rate(runtime: Runtime, cfg: RunConfig, warmup: int, with_data: bool) -> float:
    """Clips/s of the earlier release's step around today's model: per-parameter AdamW, clipping and EMA
    (`AveragedModel`), the loss and gradient norm read on the host every step, noise drawn on the host,
    and with data the clips rendered by a DataLoader in the main process."""
    torch.manual_seed(0)
    model = build_model(cfg, device=runtime.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=cfg.train.betas)
    ema = AveragedModel(model, use_buffers=True, multi_avg_fn=lambda e, p, n: torch._foreach_lerp_(
        e, p, 1.0 - ema_decay_at(cfg.train.ema_decay, int(n))))
    data = build_dataset(cfg.data, "train")
    loader = (clips for _ in iter(int, 1)  # epoch after epoch
              for clips in DataLoader(data, batch_size=cfg.train.batch_size, shuffle=True, num_workers=0, drop_last=True))
    fixed = next(loader).to(runtime.device)
    mask_fn = build_mask_schedule(replace(cfg.mask, tasks=cfg.mask.tasks or cfg.eval.tasks))
    timed = 0.0
    for step in range(cfg.train.steps):
        if step == warmup:
            runtime.synchronize()
            timed = time.perf_counter()
        video = next(loader).to(runtime.device) if with_data else fixed
        mask = mask_fn(cfg.train.batch_size, video.shape[1], step=step,
                       generator=derived_generator(cfg.seed, STREAM_MASK, step)).to(runtime.device)
        opt.zero_grad(set_to_none=True)
        with runtime.autocast():
            loss = model.training_losses(video, mask, generator=derived_generator(cfg.seed, STREAM_NOISE, step, 0))["loss"]
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        if math.isfinite(loss.item()) and math.isfinite(norm.item()):  # the host read of every step
            opt.step()
            ema.update_parameters(model)
    runtime.synchronize()
    return cfg.train.batch_size * (cfg.train.steps - warmup) / (time.perf_counter() - timed)


def train_section(report: Report, runtime: Runtime, smoke: bool, compile_too: bool) -> None:
    batches = (4, 8) if smoke else (64, 256)
    steps, warmup = (2, 1) if smoke else (40, 10)
    for batch, name in zip(batches, ("64", "256")):
        for with_data in (True, False):
            cfg = small_config(batch, steps, smoke)
            rate = trainer_rate(runtime, cfg, warmup, with_data)
            key = f"train_{name}_{'with' if with_data else 'without'}"
            earlier = earlier_rate(runtime, cfg, warmup, with_data)
            target = TARGETS["train_256_with"] if key == "train_256_with" and not smoke else None
            report.figure(f"small batch {batch}, {'data included' if with_data else 'no data'} (clips/s)",
                          rate["clips_s"], "clips/s", BEFORE[key] if not smoke else None,
                          f">= {target:,}" if target else None, rate["clips_s"] >= target if target else None,
                          note=f"earlier step in this run {earlier:,.0f} clips/s"
                               + (f"; split resident in {rate['ready_s']:.1f} s" if with_data else ""))
    if compile_too:
        cfg = small_config(batches[1], steps + 20, smoke, "train.compile=true")
        start = time.perf_counter()
        rate = trainer_rate(runtime, cfg, warmup + 20, True)
        report.figure(f"small batch {batches[1]}, data included, torch.compile (clips/s)", rate["clips_s"], "clips/s",
                      BEFORE["train_256_with"] if not smoke else None,
                      note=f"compile and warm-up included in {time.perf_counter() - start:.0f} s of this measurement")


# ----------------------------------------------------------------------------------------------
# Launches and busy time
# ----------------------------------------------------------------------------------------------
def launches_section(report: Report, runtime: Runtime, smoke: bool) -> None:
    from torch.profiler import ProfilerActivity, profile

    batch, steps = (4, 1) if smoke else (64, 5)
    cfg = small_config(batch, 100, smoke)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), DistEnv(), runtime)
        video = next(trainer.batches(cfg.train.steps))
        step_fn = lambda s: trainer.train_step(s, video, trainer.masks(s, video.shape[1]))  # noqa: E731
        for s in range(3):
            step_fn(s)
        runtime.synchronize()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if runtime.is_cuda else [])
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for s in range(3, 3 + steps):
                step_fn(s)
            runtime.synchronize()
            wall_us = (time.perf_counter() - start) * 1e6
    events = list(prof.events())
    aten = sum(e.name.startswith("aten::") for e in events) / steps
    report.figure(f"aten ops per training step, batch {batch}", aten, "ops",
                  None if runtime.is_cuda else (BEFORE["aten_cpu_b8"] if not smoke else None))
    if runtime.is_cuda:
        launches = sum(e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC")
                       for e in events) / steps
        busy = sum(e.time_range.elapsed_us() for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        report.figure(f"kernel launches per training step, batch {batch}", launches, "launches", BEFORE["launches"])
        report.figure(f"GPU busy fraction of the step, batch {batch}", busy / wall_us, "", BEFORE["busy"])


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def weights_found(name: str = FVD.weights_name) -> bool:
    try:
        resolve_weights(name)
        return True
    except WeightsError:
        return False


def eval_section(report: Report, runtime: Runtime, smoke: bool) -> None:
    clips = 2 if smoke else 256
    fvd = weights_found()
    metrics = "[fvd,psnr,ssim]" if fvd else "[psnr,ssim]"
    tasks = ["model=tiny", "eval.tasks=[interpolation]"] if smoke else ["model=small"]  # FVD needs 9 frames
    cfg = apply_overrides(RunConfig(), [*tasks, f"data.num_eval={clips}", f"eval.num_videos={clips}",
                                        f"eval.metrics={metrics}"])
    torch.manual_seed(0)
    model = build_model(cfg, device=runtime.device).eval()  # untrained: the time, not the scores
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        evaluate(model, cfg, Path(tmp) / "sweep" / "run", runtime)
        runtime.synchronize()
        seconds = time.perf_counter() - start
    target = TARGETS["eval_s"] if not smoke else None
    report.figure(f"one run's evaluation, {len(cfg.eval.tasks)} tasks x {clips} clips, {metrics}", seconds, "s", None,
                  f"<= {target:g} s" if target else None, seconds <= target if target else None,
                  note="before: 64 clips had not finished after 330 s" if not smoke else "")
    if not fvd:
        report.figure("I3D clips/s", None, "clips/s", note="I3D weights not found (MARDINI_BENCH_WEIGHTS): skipped")
        return
    rate = i3d_rate(runtime, 2 if smoke else 1024)
    cpu_rate = i3d_rate(Runtime.resolve(device="cpu"), 16) if runtime.is_cuda else rate
    target = TARGETS["i3d"] if runtime.is_cuda and not smoke else None
    report.figure(f"I3D feature pass on {runtime.device} (32x32 clips resized to 224)", rate, "clips/s",
                  BEFORE["i3d"] if runtime.is_cuda else None, f">= {target:g}" if target else None,
                  rate >= target if target else None, note=f"CPU in this run {cpu_rate:.1f} clips/s")


def i3d_rate(runtime: Runtime, clips: int) -> float:
    fvd = METRICS.build("fvd", device=runtime.device)
    fvd.batch_size = runtime.batch_for(fvd.item_bytes, 8)
    videos = torch.randint(0, 256, (clips, 9, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(runtime.device)
    fvd.update(real=videos[:min(fvd.batch_size, 2)])  # warm-up: weights, cuDNN algorithms
    runtime.synchronize()
    start = time.perf_counter()
    fvd.update(fake=videos)
    runtime.synchronize()
    return clips / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# Golden FVD / FID on the device
# ----------------------------------------------------------------------------------------------
def golden_section(report: Report, runtime: Runtime, golden: Optional[Path]) -> None:
    if golden is None or not (golden / "golden_small.json").is_file() or not weights_found():
        report.figure("golden FVD/FID on the device", None, "", note="no --golden folder or no weights: skipped")
        return
    values = json.loads((golden / "golden_small.json").read_text())
    inputs = np.load(golden / "golden_small_inputs.npz")
    btchw = lambda v: torch.from_numpy(np.ascontiguousarray(v)).permute(0, 1, 4, 2, 3)  # noqa: E731
    fvd = FVD(device=runtime.device, batch_size=4)
    fvd.update(btchw(inputs["videos_a"]), btchw(inputs["videos_b"]))
    fvd.trace_sqrt = "sqrtm"
    want = values["fvd"]["torch_bilinear"]["fvd"]["ddof1"]["sqrtm"]
    rel = abs(fvd.compute().value - want) / want
    report.figure(f"golden FVD on {runtime.device}, relative error", rel, "", target="<= 1e-4", met=rel <= 1e-4)
    if not weights_found(FID.weights_name):
        report.figure("golden FID on the device", None, "", note="Inception weights not found: skipped")
        return
    fid = FID(device=runtime.device, resize_threads=max(1, runtime.workers))
    fid.update(torch.from_numpy(inputs["images_a"]).permute(0, 3, 1, 2), torch.from_numpy(inputs["images_b"]).permute(0, 3, 1, 2))
    want = values["fid"]["fid"]["ddof1"]["sqrtm"]
    rel = abs(fid.compute().value - want) / want
    report.figure(f"golden FID on {runtime.device}, relative error", rel, "", target="<= 1e-4", met=rel <= 1e-4)


# ----------------------------------------------------------------------------------------------
# Paper width
# ----------------------------------------------------------------------------------------------
SMOKE_WIDTHS = ["model.planner.dim=64", "model.planner.mlp_dim=64", "model.planner.heads=2", "model.generator.dim=32",
                "model.generator.mlp_dim=64", "model.generator.heads=2"]


def paper_section(report: Report, runtime: Runtime, smoke: bool, compile_too: bool) -> None:
    size = dict(resolution=32, steps=1, overrides=SMOKE_WIDTHS) if smoke else dict(resolution=256, steps=8)
    for micro, ckpt in ((1, False), (1, True), (4, False), (4, True)):
        row = paper_step(runtime, micro_batch=micro, checkpointing=ckpt, **size)
        label = f"micro-batch {micro}{', checkpointing' if ckpt else ''}"
        mfu_before = {(1, False): BEFORE["mfu_mb1"], (4, True): BEFORE["mfu_mb4_ckpt"]}.get((micro, ckpt))
        cuda = runtime.is_cuda and not smoke
        report.figure(f"paper width {label}: MFU", row["mfu"], "", mfu_before if not smoke else None,
                      f">= {TARGETS['mfu']:.0%}" if cuda else None, row["mfu"] >= TARGETS["mfu"] if cuda else None,
                      note=f"{row['step_s'] * 1e3:.0f} ms/step, {row['achieved'] / 1e12:.0f} TFLOP/s")
        if row["peak_bytes"] is not None:
            ratio = row["peak_bytes"] / row["estimate_bytes"]
            ratio_before = {(1, False): BEFORE["mem_ratio_mb1"], (4, True): BEFORE["mem_ratio_mb4_ckpt"]}.get((micro, ckpt))
            report.figure(f"paper width {label}: measured / estimated memory", ratio, "", ratio_before,
                          "within 0.85-1.15", abs(ratio - 1) <= TARGETS["mem"],
                          note=f"{row['peak_bytes'] / GIB:.2f} GiB measured, {row['estimate_bytes'] / GIB:.2f} GiB "
                               f"estimated ({', '.join(f'{k} {v / GIB:.2f}' for k, v in row['estimate'].items() if v)})")
    if compile_too:
        row = paper_step(runtime, micro_batch=4, compile_loss=True, **size)
        report.figure("paper width micro-batch 4, torch.compile: MFU", row["mfu"], "", BEFORE["mfu_mb1"],
                      f">= {TARGETS['mfu']:.0%}", row["mfu"] >= TARGETS["mfu"],
                      note=f"{row['step_s'] * 1e3:.0f} ms/step; compile {row['warmup_s']:.0f} s")


# ----------------------------------------------------------------------------------------------
def parse_args(argv: Optional[List[str]] = None):
    ap = script_parser(__file__, __doc__)
    add_device(ap)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing useful")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--golden", type=Path, default=None, help="folder with golden_small.json and _inputs.npz")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (CUDA runs them)")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per figure here")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
    if unknown:
        ap.error(f"--sections: unknown {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    return args


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    runtime = Runtime.resolve(device=args.device).configure()
    report = Report(args.out)
    compile_too = runtime.is_cuda and not args.no_compile and not args.smoke
    name = runtime.describe()["device_name"] or str(runtime.device)
    print(f"bench_gpu on {name}, torch {torch.__version__}, {runtime.threads} threads, {runtime.workers} loader workers"
          f"{' (smoke: tiny sizes)' if args.smoke else ''}", flush=True)
    run: Dict[str, Callable[[], None]] = {
        "train": lambda: train_section(report, runtime, args.smoke, compile_too),
        "launches": lambda: launches_section(report, runtime, args.smoke),
        "eval": lambda: eval_section(report, runtime, args.smoke),
        "golden": lambda: golden_section(report, runtime, args.golden),
        "paper": lambda: paper_section(report, runtime, args.smoke, compile_too),
    }
    for section in args.sections.split(","):
        report.section(section)
        run[section]()
    missed = [f["name"] for f in report.figures if f["met"] is False]
    print(f"\ndone in {time.perf_counter() - report.start:.0f} s; "
          + (f"targets missed: {'; '.join(missed)}" if missed else "every target measured here was met"), flush=True)
    return report.figures


if __name__ == "__main__":
    main()
