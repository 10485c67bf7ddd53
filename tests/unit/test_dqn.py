"""DQN (update/dqn.py): the max or double-Q target it regresses on, and a checkpoint that
holds its replay, optimizer, target network, exploration schedule and RNGs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tests.unit.learners import update
from twrl_exp import serialization
from twrl_exp.build import build, make_runner
from twrl_exp.config import make
from twrl_exp.protocols import Clock
from twrl_exp.storage import ReplayBatch
from twrl_exp.update.targets import frozen_copy


@pytest.mark.parametrize("double_q", [False, True])
def test_dqn_regresses_on_the_max_or_double_q_target(double_q: bool) -> None:
    torch.manual_seed(0)
    obs_space = spaces.Box(-1, 1, (3,), np.float32)
    q = make(
        "model",
        "mlp",
        observation_space=obs_space,
        num_outputs=2,
        hidden_sizes=[8],
        output_gain=1.0,
    )
    learner = update(
        "dqn",
        model=q,
        make_model=None,
        policy=make("policy", "egreedy", action_space=spaces.Discrete(2)),
        num_envs=1,
        lr=0.1,
        optimizer="sgd",
        double_q=double_q,
        loss="mse",
        max_grad_norm=None,
    ).learner
    with torch.no_grad():  # make the online and target nets disagree
        for p in learner.target.parameters():
            p.add_(0.3)
    rng = np.random.default_rng(0)
    batch = {
        "obs": rng.normal(size=(5, 3)).astype(np.float32),
        "actions": np.array([0, 1, 1, 0, 1]),
        "rewards": np.ones(5, np.float32),
        "discounts": np.array([0.9, 0.9, 0.0, 0.9, 0.9], np.float32),
        "next_obs": rng.normal(size=(5, 3)).astype(np.float32),
    }
    online, target = frozen_copy(q), frozen_copy(learner.target)
    with torch.no_grad():
        nxt = torch.from_numpy(batch["next_obs"])
        if double_q:
            best = online(nxt).argmax(1, keepdim=True)
            boot = target(nxt).gather(1, best).squeeze(1)
        else:
            boot = target(nxt).max(1).values
        y = torch.from_numpy(batch["rewards"]) + torch.from_numpy(batch["discounts"]) * boot
    taken = online(torch.from_numpy(batch["obs"]))[torch.arange(5), torch.tensor(batch["actions"])]
    expected = torch.mean((taken - y) ** 2)
    one = ReplayBatch(**{key: value[None] for key, value in batch.items()})  # 1 minibatch
    clock = Clock()
    assert learner.learn(one, clock)["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert clock.gradient_steps == 1


def test_a_checkpoint_holds_replay_optimizer_targets_schedule_and_rngs(make_cfg, tmp_path) -> None:
    overrides = [
        "env=cartpole",
        "update=dqn",
        "update.learning_starts=200",
        "update.train_freq=50",
        "update.gradient_steps=5",
        "policy.epsilon=1.0",
        "policy.exploration_fraction=0.5",
        "train.max_env_steps=1500",
        "monitor=none",
        "eval.every_steps=null",
        "eval.final=false",
    ]
    cfg = make_cfg(*overrides)
    built = build(cfg)
    runner = make_runner(cfg, built)
    runner.run()
    path = serialization.save(runner.state_dict(), tmp_path / "last.pt")
    saved = runner.agent
    fresh = build(cfg)
    restored = make_runner(cfg, fresh)
    restored.load_state_dict(serialization.load(path))
    agent = restored.agent
    assert agent.update.storage.size == saved.update.storage.size > 0
    np.testing.assert_array_equal(
        agent.update.storage.obs[: saved.update.storage.size],
        saved.update.storage.obs[: saved.update.storage.size],
    )
    for a, b in zip(
        agent.update.learner.target.parameters(),
        saved.update.learner.target.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    assert agent.clock == saved.clock
    assert agent.clock.gradient_steps == 5 * agent.clock.updates > 0
    state = agent.update.learner.optimizer.state_dict()["state"]
    assert state[0]["step"] == saved.update.learner.optimizer.state_dict()["state"][0]["step"]
    assert agent.update.learner.env_steps_at_sync == saved.update.learner.env_steps_at_sync
    epsilon = agent.policy.epsilon(agent.clock)
    assert epsilon == pytest.approx(saved.policy.epsilon(saved.clock))
    assert not math.isclose(epsilon, 1.0)
    assert agent.rng.random() == saved.rng.random()  # the RNG continues where it was
    built.close()
    fresh.close()
