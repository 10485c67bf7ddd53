"""A DQN population's learning step: member m learns what its own DQN learns from its own
replayed minibatches (learners built from the CLI's config, each with its own seed and values)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from twrl_exp import seeding
from twrl_exp.build import build_agent
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock
from twrl_exp.storage import ReplayBatch
from twrl_exp.update.stacked_dqn import StackedDQN

SPACES = gym.make("CartPole-v1")
MEMBERS = [  # seed, then each member's own vectorisable values
    (0, ["update.lr=0.001"]),
    (1, ["update.lr=0.003", "update.tau=0.5", "update.target_update_interval=20"]),
    (2, ["update.lr=0.0003", "update.max_grad_norm=0.05", "update.target_update_interval=45"]),
]
STRUCTURES = {  # a few gradient steps per learn: equal within 1e-5 "after the first updates"
    "preset": ["update.gradient_steps=1"],
    "double-huber": ["update.double_q=true", "update.loss=huber", "update.gradient_steps=2"],
    "prioritized": ["update.prioritized=true", "update.gradient_steps=3"],
}


def member(make_cfg, seed: int, *overrides: str):
    cfg = make_cfg("env=cartpole", "update=dqn", "policy=egreedy", f"seed={seed}", *overrides)
    torch.manual_seed(seeding.integer(seed, seeding.Stream.TORCH))
    agent = build_agent(cfg, SPACES.observation_space, SPACES.action_space, cfg.env.num_envs)
    return agent.update.learner, cfg


def replayed(g: int, b: int, rng: np.random.Generator, weighted: bool) -> ReplayBatch:
    obs = rng.normal(size=(g, b, 4)).astype(np.float32)
    return ReplayBatch(
        obs=obs,
        actions=rng.integers(0, 2, (g, b)),
        rewards=rng.normal(1.0, 0.5, (g, b)).astype(np.float32),
        discounts=np.where(rng.random((g, b)) < 0.1, 0.0, 0.99).astype(np.float32),
        next_obs=(obs + rng.normal(0, 0.1, (g, b, 4))).astype(np.float32),
        weights=rng.uniform(0.2, 1.0, (g, b)).astype(np.float32) if weighted else None,
    )


@pytest.mark.parametrize(
    ("structure", "uneven", "one_lr"),
    [
        *((s, False, False) for s in STRUCTURES),
        ("preset", True, False),
        ("prioritized", True, False),
        ("preset", True, True),
    ],
)
def test_each_member_learns_what_its_own_dqn_learns(
    make_cfg, structure: str, uneven: bool, one_lr: bool
) -> None:
    """``uneven``: members hand over 1 to 3 minibatches per learn, or none (``gradient_steps:
    -1`` counts only env steps that were not autoreset steps; a member's train_freq falls on
    another step): gradient step g moves only the members with a g-th minibatch. ``one_lr``:
    every member has the same learning rate (a population of seeds: one optimiser call)."""
    shared = STRUCTURES[structure]
    members = [(seed, ["update.lr=0.002", *values[1:]]) for seed, values in MEMBERS]
    members = members if one_lr else MEMBERS
    alone = [member(make_cfg, seed, *values, *shared) for seed, values in members]
    together = [member(make_cfg, seed, *values, *shared)[0] for seed, values in members]
    cfg = alone[0][1]
    g = cfg["update"]["gradient_steps"]
    b = cfg["update"]["batch_size"]
    rng = np.random.default_rng(0)
    learns = 30  # every 4 env steps (train_freq): 120 env steps, past every sync interval

    def count(j: int, m: int) -> int:
        return (0 if (j + m) % 4 == 0 else 1 + (j + m) % 3) if uneven else g

    batches = [
        [
            replayed(count(j, m), b, rng, "update.prioritized=true" in shared)
            if count(j, m)
            else None
            for m in range(len(MEMBERS))
        ]
        for j in range(learns)
    ]
    stacked = StackedDQN(together)
    single_clocks = [Clock() for _ in MEMBERS]
    clocks = [Clock() for _ in MEMBERS]
    single_metrics, stacked_metrics = [], []
    for j in range(learns):
        for clock in [*single_clocks, *clocks]:
            clock.env_steps += 4
        single_metrics.append(
            [
                None if batches[j][m] is None else learner.learn(batches[j][m], single_clocks[m])
                for m, (learner, _) in enumerate(alone)
            ]
        )
        stacked_metrics.append(stacked.learn(batches[j], clocks))
        for m, (learner, _) in enumerate(alone):
            if batches[j][m] is not None:
                np.testing.assert_allclose(stacked.feedback(m), learner.feedback(), atol=1e-4)
    stacked.write_back(with_state=True)
    for m, (learner, _) in enumerate(alone):
        mine = together[m]
        for net in ("q", "target"):
            for a, c in zip(
                getattr(learner, net).parameters(), getattr(mine, net).parameters(), strict=True
            ):
                torch.testing.assert_close(c, a, rtol=0, atol=1e-5)
        assert mine.env_steps_at_sync == learner.env_steps_at_sync
        steps = sum(count(j, m) for j in range(learns))
        assert clocks[m].gradient_steps == single_clocks[m].gradient_steps == steps
        for j in range(learns):
            expected, got = single_metrics[j][m], stacked_metrics[j][m]
            if expected is None or got is None:
                assert expected is got is None
                continue
            assert set(got) == set(expected)
            for key in expected:
                assert got[key] == pytest.approx(expected[key], rel=1e-3, abs=1e-5), (m, j, key)
    syncs = [learner.env_steps_at_sync for learner, _ in alone]
    # Each member's target refreshed on its own interval: the preset's 10 env steps (every
    # learn), 20, and 45 (at 48 and 96).
    assert uneven or syncs == [120, 120, 96]


def test_structural_differences_are_refused_in_one_sentence(make_cfg) -> None:
    a = member(make_cfg, 0)[0]
    b = member(make_cfg, 1, "update.double_q=true")[0]
    with pytest.raises(ConfigError, match=r"member 1 has update\.double_q=True, member 0 False"):
        StackedDQN([a, b])
