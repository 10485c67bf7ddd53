"""Fixed seeds; each agent must beat a margin against the optimum or the random baseline.

These run the shipped presets (conf/tuned/) in-process with no monitors, so they check the
defaults a user gets as well as the algorithms.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.learning.evaluations import evaluations
from twrl_exp.build import build, make_runner
from twrl_exp.runner import MonitorBase, Runner


def train(make_cfg, *overrides: str, **runner_kwargs) -> Runner:
    cfg = make_cfg(*overrides, "monitor=none")
    runner = make_runner(cfg, build(cfg), eval_every_steps=None, **runner_kwargs)
    runner.run()
    return runner


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_solves_cartpole(make_cfg, seed: int) -> None:
    runner = train(
        make_cfg,
        "env=cartpole",
        "policy=categorical",
        "model=mlp",
        "update=reinforce",
        f"seed={seed}",
        stop_when_solved=True,
    )
    assert runner.history.solved_episode is not None, max(runner.history.trailing)
    assert runner.history.eval_means[-1] >= 475


@pytest.mark.parametrize("target", ["sarsa", "q_learning", "expected_sarsa"])
def test_tile_coded_td_lambda_reaches_the_goal_on_mountaincar(make_cfg, target: str) -> None:
    runner = train(
        make_cfg,
        "env=mountaincar",
        "model=tilecoding",
        "policy=egreedy",
        "update=td_lambda",
        f"update.target={target}",
        "train.max_episodes=300",
    )
    lengths = np.array(runner.history.lengths)
    assert lengths[:10].mean() > 180  # starts unable to reach the goal ...
    assert lengths[-50:].mean() < 160  # ... and reaches it well under 200 steps
    assert runner.history.eval_means[-1] > -160


@pytest.mark.parametrize(("target", "best"), [("sarsa", -17.0), ("q_learning", -13.0)])
def test_tabular_td_finds_the_cliff_walking_paths(make_cfg, target: str, best: float) -> None:
    """Sarsa learns the safe path (-17), Q-learning the optimal cliff-edge path (-13)."""
    runner = train(
        make_cfg,
        "env=cliffwalking",
        "model=table",
        "policy=egreedy",
        "update=td_lambda",
        f"update.target={target}",
    )
    assert runner.history.eval_means[-1] >= best


def test_random_agent_is_the_baseline_that_learning_beats(make_cfg) -> None:
    runner = train(
        make_cfg,
        "env=cartpole",
        "model=none",
        "policy=random",
        "update=none",
        "train.max_env_steps=20000",
    )
    assert np.mean(runner.history.returns) < 30


class ImprovedBy(MonitorBase):
    """Ends the run once the trailing-100 mean is ``margin`` above the first 100 episodes'."""

    def __init__(self, margin: float) -> None:
        self.margin = margin

    def episodes(self, runner: Runner, first: int) -> None:
        del first
        h = runner.history
        if len(h.returns) > 100 and h.trailing[-1] > np.mean(h.returns[:100]) + self.margin:
            runner.stop_reason = "improved"


@pytest.mark.slow
def test_reinforce_improves_pendulum_clearly(make_cfg) -> None:
    """The preset's run up to the margin (seeds 0 / 1 / 2 reach it at 747k / 429k / 864k of
    its 2M steps), not the rest of its budget."""
    runner = train(
        make_cfg, "env=pendulum", "policy=normal", "update=reinforce", monitors=[ImprovedBy(400)]
    )
    returns = np.array(runner.history.returns)
    assert returns[:100].mean() < -1000
    assert runner.history.trailing[-1] > returns[:100].mean() + 400


# ---------------------------------------------------------------------------- deep RL
# The presets' own budgets where they are short; shorter, smaller settings for the off-policy
# actor-critics (20k steps of 256-wide networks take minutes on 2 cores). The full acceptance
# runs (3 seeds each, the zoo's budgets) are in the closing notes and benchmarks/RESULTS.md.


@pytest.mark.slow
def test_ppo_solves_cartpole_within_100k_steps(make_cfg) -> None:
    evals = evaluations(make_cfg, "env=cartpole", "update=ppo", "seed=0", every=10_000, until=475)
    assert max(evals) >= 475, evals


@pytest.mark.slow
def test_a2c_solves_cartpole(make_cfg) -> None:
    evals = evaluations(
        make_cfg,
        "env=cartpole",
        "update=a2c",
        "seed=0",
        "train.max_env_steps=50000",
        every=12_500,
        until=475,
    )
    assert max(evals) >= 475, evals


@pytest.mark.slow
def test_dqn_solves_cartpole_within_50k_steps(make_cfg) -> None:
    evals = evaluations(
        make_cfg,
        "env=cartpole",
        "policy=egreedy",
        "update=dqn",
        "seed=0",
        every=5_000,
        until=475,
    )
    assert max(evals) >= 475, evals


@pytest.mark.slow
@pytest.mark.parametrize(
    ("update", "extra"),
    [
        ("sac", []),
        # 6k steps was the edge for TD3 (best evaluations -185 to -711 over seeds 0-4, before
        # the seed tree as after); by 8k every seed is above -210.
        ("td3", ["update.learning_starts=1000", "train.max_env_steps=8000"]),
    ],
)
def test_off_policy_actor_critics_swing_pendulum_up(make_cfg, update: str, extra) -> None:
    evals = evaluations(
        make_cfg,
        "env=pendulum",
        f"update={update}",
        "seed=0",
        "model.hidden_sizes=[64,64]",
        "train.max_env_steps=6000",
        *extra,
        every=1_000,
    )
    assert evals[0] < -700, evals  # starts near the random agent (about -1200) ...
    assert max(evals) > -300, evals  # ... and swings up and balances within 6k (8k) steps
