"""Prioritised replay's learning check: the DQN check of test_learning.py (same env, preset,
seed, budget, evaluation and threshold) with ``update.prioritized=true``."""

from __future__ import annotations

import pytest

from twrl_exp.build import build, make_runner


def best_eval(make_cfg, *overrides: str, every: int) -> list[float]:
    cfg = make_cfg(*overrides, "monitor=none", "eval.episodes=5")
    runner = make_runner(cfg, build(cfg), eval_every_steps=every)
    runner.run()
    return runner.history.eval_means


@pytest.mark.slow
def test_prioritized_dqn_solves_cartpole_within_50k_steps(make_cfg) -> None:
    """First evaluation at 500: seed 0 and 1 after 25k steps, seed 2 after 35k (of 50k)."""
    evals = best_eval(
        make_cfg,
        "env=cartpole",
        "policy=egreedy",
        "update=dqn",
        "update.prioritized=true",
        "seed=0",
        every=5_000,
    )
    assert max(evals) >= 475, evals
