"""Cost accounting: run_cost fields, FLOPs scaling with batch, meta builds at paper scale, Table 3 CLI."""

from __future__ import annotations

import json

import pytest
import torch

from mardini_bench.config import RunConfig, apply_overrides
from mardini_bench.cost import LiveTensorBytes, count_flops, latent_shape, run_cost, sample_fn, train_step_fn
from mardini_bench.cost.cli import main
from mardini_bench.factory import build_model

KEYS = {"params_planner", "params_generator", "flops_train_step", "flops_sample", "latency_sample_s", "peak_mem_mb"}


def _cfg(*overrides: str) -> RunConfig:
    return apply_overrides(RunConfig(), ["model=tiny", "data.resolution=16", "data.frames=5",
                                         "model.diffusion.sample_steps=2", *overrides])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(_cfg())


def test_run_cost_fields_are_positive_and_state_is_restored(tiny):
    tiny.set_stage("generator_warmup")
    tiny.eval()
    cost = run_cost(tiny, _cfg("train.batch_size=2"), repeats=1)
    assert KEYS <= set(cost)
    assert all(cost[k] > 0 for k in KEYS)
    assert cost["peak_mem_source"] == "live_tensor_estimate"
    assert cost["params_planner"] + cost["params_generator"] == sum(p.numel() for p in tiny.parameters())
    assert tiny.stage == "generator_warmup" and not tiny.training


@pytest.mark.parametrize("variant", ["model.planner.name=none", "model.generator.name=none"])
def test_run_cost_covers_the_table2_ablation_rows(variant):
    # DM-only feeds Z_uncond straight into the generator; MAR-only has no generator at all
    torch.manual_seed(0)
    model = build_model(_cfg(variant)).eval()
    cost = run_cost(model, _cfg(variant, "train.batch_size=2"), repeats=1)
    assert all(cost[k] > 0 for k in KEYS - {"params_planner", "params_generator"})
    assert (cost["params_planner"] == 0) == (variant == "model.planner.name=none")
    assert (cost["params_generator"] == 0) == (variant == "model.generator.name=none")


def test_train_flops_scale_linearly_with_batch(tiny):
    one, four = (count_flops(train_step_fn(tiny, _cfg(), batch=b)) for b in (1, 4))
    assert four == pytest.approx(4 * one, rel=0.02)


def test_sample_flops_grow_with_steps_and_cfg_doubles_the_generator(tiny):
    flops = lambda *o: count_flops(sample_fn(tiny, _cfg(*o)))  # noqa: E731
    base, more = flops("model.diffusion.sample_steps=2"), flops("model.diffusion.sample_steps=4")
    guided = flops("model.diffusion.sample_steps=2", "model.diffusion.cfg_scale=2.5")
    per_step = (more - base) / 2
    assert per_step > 0
    assert guided - base == pytest.approx(2 * per_step, rel=0.02)  # each of 2 steps runs G twice


def test_sample_cost_uses_the_interpolation_tasks_own_sampling(tiny):
    """The costed clip is an interpolation clip: its per-task steps and guidance count, others' do not."""
    flops = lambda *o: count_flops(sample_fn(tiny, _cfg("model.diffusion.sample_steps=2", *o)))  # noqa: E731
    base = flops()
    assert flops('model.diffusion.task_sample_steps=[["interpolation",4]]') > base
    assert flops('model.diffusion.task_cfg_scale=[["interpolation",2.0]]') > base
    assert flops('model.diffusion.task_sample_steps=[["expansion",4]]') == base


def test_train_flops_match_a_hand_count_for_one_linear():
    """FlopCounterMode convention: 2*m*n*k forward, twice that backward (input and weight grads)."""
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 8 * 64 * 32


def test_live_tensor_bytes_sees_a_large_temporary():
    x = torch.randn(256, 256)
    with LiveTensorBytes() as tracker:
        y = (x @ x).relu()  # two 256 KB results; the first is freed once relu is done
        del y
    assert tracker.peak >= 2 * 256 * 256 * 4
    assert tracker.live == 0


def test_meta_paper_scale_preset_is_costed_without_allocating():
    cfg = apply_overrides(RunConfig(), ["model=mardini_s_st", "data.resolution=256", "train.batch_size=1",
                                        "model.diffusion.sample_steps=2"])
    model = build_model(cfg, device="meta")
    assert latent_shape(model, cfg, 1) == (1, 9, 16, 32, 32)  # 8x VAE, 16 channels (paper §2.1)
    cost = run_cost(model, cfg)
    assert cost["latency_sample_s"] is None
    assert 1.2e9 < cost["params_planner"] < 1.45e9 and 2.7e8 < cost["params_generator"] < 3.0e8
    # each of the 2 DDIM steps applies most of G's ~2 FLOPs/param to 9*32*32 tokens; attention adds to it
    assert cost["flops_sample"] > 2 * cost["params_generator"] * 9 * 32 * 32
    assert cost["flops_train_step"] > 3 * 2 * cost["params_planner"] * 9 * 16 * 17 * 0.9


def test_table3_cli_prints_rows_with_paper_ratios(capsys):
    main(["table3", "--resolutions", "256", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and {r["resolution"] for r in rows} == {256}
    by_id = {r["row_id"]: r for r in rows}
    # at 256 px the planner already runs on the 32x32 latent, so asymmetric resolution changes nothing
    assert by_id["no_asym_13"]["flops"] == by_id["asym_res_13"]["flops"]
    assert by_id["asym_attn_13"]["flops"] < by_id["no_asym_13"]["flops"]
    assert by_id["no_asym_9"]["paper_latency_s"] == pytest.approx(2.76)


def test_table3_rejects_a_resolution_the_planner_grid_cannot_take(capsys):
    with pytest.raises(SystemExit) as err:
        main(["table3", "--resolutions", "300"])
    assert err.value.code == 2
    assert "300" in capsys.readouterr().err
