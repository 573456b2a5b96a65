"""A training split held on the run's device, rendered once: each step's batch is an index gather.

A synthetic clip is a pure function of (seed, split, index) and a folder split decodes to the same
clips every epoch, so when the whole split fits its budget and training reads it at least once, the
trainer renders it once (through the runtime's loader workers) and gathers every batch on the device:
no per-step rendering, decoding or host-to-device copy. The clips are the ones the loader would yield,
value for value, so which path ran never changes a result. A split over its budget streams through
a DataLoader as before.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from mardini_bench.config import DataConfig
from mardini_bench.runtime import Runtime

# What a resident split may take: a quarter of a GPU's memory (the rest is the model's), and on the CPU
# 2 GiB (a 2,048-clip split of 9 x 32 x 32 clips is 226 MB; two runs of a local sweep share the RAM).
CUDA_FRACTION = 0.25
CPU_BYTES = 2 * 2 ** 30
RENDER_BATCH = 64


def split_bytes(data: Dataset, cfg: DataConfig) -> int:
    """Bytes of the split as float32 clips (T, 3, H, W)."""
    return len(data) * cfg.frames * 3 * cfg.resolution ** 2 * 4


def budget(runtime: Runtime) -> int:
    """Bytes a resident split may take on `runtime`'s device."""
    if runtime.is_cuda:
        return int(torch.cuda.get_device_properties(runtime.device).total_memory * CUDA_FRACTION)
    return CPU_BYTES if runtime.device.type == "cpu" else 0


def resident_split(data: Dataset, cfg: DataConfig, runtime: Runtime, reads: int) -> Optional[torch.Tensor]:
    """The whole split (N, T, 3, H, W) on the device, or None when it is over budget or the run reads
    fewer clips than it holds (`reads`: clips this process takes until it stops)."""
    if len(data) == 0 or reads < len(data) or split_bytes(data, cfg) > budget(runtime):
        return None
    loader = DataLoader(data, batch_size=RENDER_BATCH, num_workers=runtime.workers, pin_memory=runtime.is_cuda)
    out = torch.empty((len(data), cfg.frames, 3, cfg.resolution, cfg.resolution), device=runtime.device)
    start = 0
    for clips in loader:
        out[start:start + len(clips)].copy_(clips, non_blocking=runtime.is_cuda)
        start += len(clips)
    return out


__all__ = ["resident_split", "split_bytes", "budget"]
