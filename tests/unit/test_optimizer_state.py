"""A checkpoint's optimiser state continues under the run's config: ``resume=<id>
update.lr=...`` takes the new learning rate (torch's ``load_state_dict`` alone would bring the
saved one back, and a run that diverged at lr=1e30 would diverge again)."""

from __future__ import annotations

import copy

import torch

from twrl_exp.update.checks import load_optimizer_state, make_optimizer


def test_the_saved_moments_continue_under_the_configs_settings() -> None:
    first = torch.nn.Parameter(torch.ones(3))
    saved_with = make_optimizer("adam", [first], 1e30, 0.0, {})
    first.grad = torch.tensor([1.0, 2.0, 3.0])
    saved_with.step()
    saved = copy.deepcopy(saved_with.state_dict())
    second = torch.nn.Parameter(torch.ones(3))
    resumed = make_optimizer("adam", [second], 5e-4, 0.0, {"eps": 1e-5})
    load_optimizer_state(resumed, saved)
    group = resumed.param_groups[0]
    assert group["lr"] == 5e-4
    assert group["eps"] == 1e-5
    state = resumed.state[second]
    torch.testing.assert_close(state["exp_avg"], saved_with.state[first]["exp_avg"])
    assert float(state["step"]) == 1.0


def test_adam_over_large_networks_is_the_fused_kernel_unless_the_config_chooses() -> None:
    """DQN's and SAC's 256-256 networks step with torch's fused Adam (one pass over the
    parameters), as their population members do (each member's rows with the same kernel: its
    single run's numbers); small networks keep the single-tensor form, and a config's
    ``fused``/``foreach`` is kept."""
    from twrl_exp.update.checks import FUSED_ADAM_FROM

    large = [torch.nn.Parameter(torch.zeros(FUSED_ADAM_FROM))]
    small = [torch.nn.Parameter(torch.zeros(FUSED_ADAM_FROM - 1))]
    assert make_optimizer("adam", large, 1e-3, 0.0, {}).param_groups[0]["fused"] is True
    assert not make_optimizer("adam", small, 1e-3, 0.0, {}).param_groups[0]["fused"]
    chosen = make_optimizer("adam", large, 1e-3, 0.0, {"foreach": True}).param_groups[0]
    assert not chosen["fused"]
    assert chosen["foreach"] is True
    assert not make_optimizer("sgd", large, 1e-3, 0.0, {}).param_groups[0].get("fused")


def test_a_run_flushes_subnormal_floats_to_zero(make_cfg) -> None:
    """Adam's moments of weights without gradient decay below float32's normal range, where
    each operation costs ~15x: every run's build sets torch to flush them to zero."""
    from twrl_exp.build import build

    torch.set_flush_denormal(False)
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0  # a subnormal, kept
    built = build(make_cfg("env=cartpole", "update=dqn", "monitor=none"), evaluation=False)
    built.close()
    assert (torch.tensor([1e-39]) * 1.0).item() == 0.0
