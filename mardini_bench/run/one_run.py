"""One run: train (resuming), evaluate, measure cost, then write `result.json` last.

    from mardini_bench.run.one_run import run
    result = run(cfg, Path("runs/abc123"))

    python -m mardini_bench.runner RUN_DIR [key=value ...]     # one config by hand

`result.json` = {run_id, status: DONE, config, train: {steps, final_loss, wall_s, threads}, cost: {...},
records: [{task, method, metric, value, protocol, per_video, features}]}. It is written atomically
and only after everything else succeeded, so its presence means the run is complete; a run that
raises leaves none. In a multi-process job every rank trains; rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from mardini_bench.args import Command, add_overrides, command_main
from mardini_bench.cli import user_errors
from mardini_bench.config import RunConfig, apply_overrides, from_dict, to_dict, training_dict, validate
from mardini_bench.cost import run_cost
from mardini_bench.data.video_io import VideoReadError
from mardini_bench.io import append_jsonl, load_json, write_json, write_text
from mardini_bench.run import distributed
from mardini_bench.run.evaluate import check_eval_config, check_weights, evaluate
from mardini_bench.run.result_file import COST_KEYS, RESULT
from mardini_bench.run.state import CONFIG
from mardini_bench.run.train import CHECKPOINT, LOG, NonFiniteError, atomic_torch_save, train
from mardini_bench.runtime import Runtime, check_environment



def run(cfg: RunConfig, run_dir: Path, until: Optional[int] = None) -> Dict[str, Any]:
    """Train `cfg` in `run_dir`, evaluate, measure cost, write `result.json`; returns the result.

    `until` stops training early (a checkpoint, no evaluation, no result): for tests and debugging.
    """
    run_dir = Path(run_dir)
    validate(cfg)  # configs built in code or read back from config.json get the plan-time checks too
    check_eval_config(cfg)  # all before training: a typo or a bad weight file must not cost a training run
    check_environment()
    if until is None:
        check_weights(cfg)
    env = distributed.detect()
    runtime = Runtime.resolve(cfg, local_rank=env.local_rank).configure()  # before any torch work
    distributed.init(env, runtime.device)
    fresh = not run_dir.exists()
    sibling = reuse_sibling_training(cfg, run_dir) if env.is_main and not env.distributed else None
    try:
        trained = train(cfg, run_dir, until=until, env=env, runtime=runtime)
    except BaseException:
        if fresh and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # failed before writing anything (bad data): leave no empty run folder behind
        raise
    finally:
        distributed.shutdown(env)
    if sibling is not None:
        trained.summary["trained_in"] = sibling
    if not env.is_main or trained.summary["steps"] < cfg.train.steps:
        return {"run_id": run_dir.name, "status": "PARTIAL", "train": trained.summary}
    return finish(cfg, run_dir, trained.model, trained.summary, runtime)


def reuse_sibling_training(cfg: RunConfig, run_dir: Path) -> Optional[str]:
    """Start from a finished sibling's final checkpoint when it trained exactly what `cfg` trains.

    A sweep point that differs from another only in how the trained model is sampled or scored
    (the fields whose rules say `after_training`, and `eval.*`; e.g. Fig. 6a's DDIM steps) has the same config, seed and data
    order for training, so it would train the same weights again. Instead the sibling's `last.pt` (its
    config set to this run's) and its training log are copied in, and the run goes straight to
    evaluation; `result.json` names the sibling under `train.trained_in`. Siblings are the other
    folders of the sweep (`run_dir`'s parent) with a `result.json`. Returns the sibling's run id, or
    None (a fresh or partly trained run, the fsdp checkpoint format, or no such sibling)."""
    if cfg.train.parallel != "ddp" or run_dir.joinpath(CHECKPOINT).exists() or not run_dir.parent.is_dir():
        return None
    key = training_dict(cfg)
    for sibling in sorted(run_dir.parent.iterdir()):
        if sibling == run_dir or not (sibling / RESULT).is_file() or not (sibling / CHECKPOINT).is_file():
            continue
        try:
            other = from_dict(RunConfig, load_json(sibling / CONFIG))
            if training_dict(other) != key:
                continue
            ckpt = torch.load(sibling / CHECKPOINT, map_location="cpu", weights_only=True)
        except Exception:  # a damaged or foreign sibling is not a source; its own status reports it
            continue
        if ckpt.get("step", 0) < cfg.train.steps:
            continue
        ckpt["config"] = to_dict(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (sibling / LOG).is_file():
            write_text(run_dir / LOG, (sibling / LOG).read_text())
        atomic_torch_save(ckpt, run_dir / CHECKPOINT)
        append_jsonl(run_dir / LOG, {"event": "trained_in", "run_id": sibling.name, "step": ckpt["step"]})
        return sibling.name
    return None


def finish(cfg: RunConfig, run_dir: Path, model: Any, summary: Dict[str, Any],
           runtime: Optional[Runtime] = None) -> Dict[str, Any]:
    """Evaluate and cost a trained model, then write `result.json` (the last file of a run)."""
    runtime = runtime or Runtime.resolve(cfg)
    start = time.perf_counter()
    records = evaluate(model, cfg, run_dir, runtime)
    eval_s = time.perf_counter() - start
    cost = run_cost(model, cfg)
    result = {"run_id": run_dir.name, "status": "DONE", "config": to_dict(cfg),
              "train": {**summary, "eval_wall_s": eval_s, "threads": torch.get_num_threads(),
                        "device": runtime.describe()["device_name"] or str(runtime.device)},
              "cost": {k: cost.get(k) for k in COST_KEYS}, "records": records}
    write_json(run_dir / RESULT, result)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run folder (created; resumed from its last.pt)")
    add_overrides(parser, help="dotted overrides, e.g. model=tiny train.steps=50")


@user_errors(NonFiniteError, VideoReadError)
def execute(args: argparse.Namespace) -> None:
    cfg = apply_overrides(RunConfig(), args.overrides)
    result = run(cfg, args.run_dir)
    for rec in result.get("records", []):
        print(f"{rec['task']:<24} {rec['method']:<14} {rec['metric']:<5} {rec['value']:.4f}")
    print(f"wrote {args.run_dir / RESULT}")


COMMAND = Command(add_arguments, execute, "Train, evaluate and cost one config in RUN_DIR.")


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m mardini_bench.runner`: the `run` command."""
    return command_main(COMMAND, argv, "python -m mardini_bench.runner")
