"""Prioritised replay's learning check: the DQN check of test_learning.py (same env, preset,
seed, budget, evaluation and threshold) with ``update.prioritized=true``."""

from __future__ import annotations

import pytest

from tests.learning.evaluations import evaluations


@pytest.mark.slow
def test_prioritized_dqn_solves_cartpole_within_50k_steps(make_cfg) -> None:
    """First evaluation at 500: seed 0 and 1 after 25k steps, seed 2 after 35k (of 50k)."""
    evals = evaluations(
        make_cfg,
        "env=cartpole",
        "policy=egreedy",
        "update=dqn",
        "update.prioritized=true",
        "seed=0",
        every=5_000,
        until=475,
    )
    assert max(evals) >= 475, evals
