"""Flat training state: AdamW and the EMA over one buffer follow torch's per-parameter classes."""

from __future__ import annotations

import torch
import torch.nn as nn

from mardini_bench.run.optim import FlatAdamW, FlatEMA, FlatParameters
from mardini_bench.run.train import ema_decay_at

HYPER = dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)


def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 3), nn.Linear(3, 2))
    model.register_buffer("scale", torch.tensor(2.0))
    return model


def grads(model: nn.Module, step: int) -> None:
    """Fill every trainable parameter's gradient (in place, so flat views stay bound) from a seed."""
    g = torch.Generator().manual_seed(step)
    for p in model.parameters():
        if p.requires_grad:
            new = torch.randn(p.shape, generator=g)
            p.grad.copy_(new) if p.grad is not None else setattr(p, "grad", new)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the fused kernel's rounding, which depends on where a value sits in its vector lanes."""
    return torch.allclose(a, b, rtol=1e-6, atol=1e-8)


def test_flat_adamw_follows_torch_fused_adamw_through_frozen_stages_and_a_resume():
    ref, flat_model = net(), net()
    ref_opt = torch.optim.AdamW(ref.parameters(), fused=True, **HYPER)
    flat = FlatParameters(flat_model.parameters())
    opt = FlatAdamW(flat, **HYPER)
    # stage 1 trains all, stage 2 freezes the middle layer (torch skips a parameter without a gradient),
    # stage 3 trains all again: the middle layer resumes its own step count
    frozen = {1: [], 2: [2], 3: []}
    for step in range(9):
        stage = 1 + step // 3
        for model in (ref, flat_model):
            for i, layer in enumerate(model):
                layer.requires_grad_(i not in frozen[stage])
        flat.zero_grad()
        ref_opt.zero_grad(set_to_none=True)
        grads(ref, step), grads(flat_model, step)
        ref_opt.step(), opt.step()
        if step == 4:  # resume mid-run from the torch optimiser's own checkpoint format
            opt = FlatAdamW(flat, **HYPER)
            opt.load_state_dict(ref_opt.state_dict())
    for a, b, start in zip(ref.parameters(), flat_model.parameters(), net().parameters()):
        assert close(a, b) and not torch.equal(b, start)  # trained, and as torch trains
    state, ref_state = opt.state_dict()["state"], ref_opt.state_dict()["state"]
    assert state.keys() == ref_state.keys()
    for i in state:
        assert float(state[i]["step"]) == float(ref_state[i]["step"])
        assert close(state[i]["exp_avg"], ref_state[i]["exp_avg"])
        assert close(state[i]["exp_avg_sq"], ref_state[i]["exp_avg_sq"])
    assert float(state[2]["step"]) == 6 and float(state[0]["step"]) == 9  # the frozen layer missed 3 steps


def test_a_skipped_step_moves_nothing_not_even_the_step_count():
    model = net()
    flat = FlatParameters(model.parameters())
    opt = FlatAdamW(flat, **HYPER)
    grads(model, 0)
    opt.step(skip=torch.tensor(False))
    before = (flat.data.clone(), opt.exp_avg.clone(), opt.steps.clone())
    flat.grad.fill_(float("nan"))
    opt.step(skip=torch.tensor(True))
    assert torch.equal(flat.data, before[0]) and torch.equal(opt.exp_avg, before[1])
    assert torch.equal(opt.steps, before[2])


def test_gradients_land_in_the_flat_buffer_through_autograd():
    model = net()
    flat = FlatParameters(model.parameters())
    model(torch.randn(4, 5)).sum().backward()
    assert flat.grad.abs().sum() > 0
    assert all(p.grad.data_ptr() == flat.grad[a:b].data_ptr() for p, (a, b) in zip(model.parameters(), flat.bounds))


def test_flat_ema_equals_averaged_model_bit_for_bit_and_skips_flagged_steps():
    ref_model, model = net(), net()
    decay = 0.9

    def warmup(ema_params, params, n):
        torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay_at(decay, int(n)))

    ref = torch.optim.swa_utils.AveragedModel(ref_model, multi_avg_fn=warmup, use_buffers=True)
    flat = FlatParameters(model.parameters())
    ema = FlatEMA(model, flat, decay)
    for step in range(12):
        with torch.no_grad():
            for m in (ref_model, model):
                for p in m.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(step)))
                m.scale.mul_(1.1)
        ref.update_parameters(ref_model)
        ema.update(torch.tensor(True))
        ema.update(torch.tensor(False))  # a flagged step: no change, not counted
    assert int(ema.n_averaged) == int(ref.n_averaged) == 12
    mine, theirs = ema.state_dict(), ref.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    fresh = FlatEMA(net(), FlatParameters(net().parameters()), decay)
    fresh.load_state_dict(theirs)  # AveragedModel's checkpoint entry loads as it is
    assert all(torch.equal(a, b) for a, b in zip(fresh.module.parameters(), ref.module.parameters()))


def test_the_gradient_norm_stays_accurate_over_millions_of_values():
    model = nn.Linear(1300, 2000)  # 2.6M values: one float32 reduction over them drifts by 1e-4
    flat = FlatParameters(model.parameters())
    g = torch.Generator().manual_seed(0)
    flat.grad[:model.weight.numel()] = torch.randn(model.weight.numel(), generator=g) * 100
    truth = torch.linalg.vector_norm(flat.grad.double())
    assert abs(float(flat.grad_norm()) - float(truth)) / float(truth) < 1e-6
