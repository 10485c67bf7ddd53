"""A2C and PPO (update/actor_critic.py): the log-prob a policy records is the one learning
recomputes, and both learn a two-armed bandit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tests.unit.learners import ONE, bandit_step, mlp, update
from twrl_exp.config import make
from twrl_exp.policy import Categorical
from twrl_exp.protocols import Clock


def test_the_log_prob_a_policy_records_is_the_one_learning_recomputes() -> None:
    rng = np.random.default_rng(0)
    cat = Categorical(action_space=spaces.Discrete(3))
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    actions, extras = cat.act(logits, rng, Clock())
    recomputed = cat.log_prob(torch.from_numpy(logits), torch.from_numpy(actions))
    np.testing.assert_allclose(extras["log_prob"], recomputed.numpy(), rtol=1e-5, atol=1e-6)
    normal = make(
        "policy", "normal", action_space=spaces.Box(-1, 1, (2,), np.float32), init_std=0.6
    )
    means = rng.normal(size=(5, 2)).astype(np.float32)
    actions, extras = normal.act(means, rng, Clock())
    recomputed = normal.log_prob(torch.from_numpy(means), torch.from_numpy(actions))
    np.testing.assert_allclose(
        extras["log_prob"], recomputed.detach().numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("option", ["ppo", "a2c"])
def test_actor_critics_learn_a_two_armed_bandit(option: str) -> None:
    """One-step episodes: action 1 pays 1, action 0 pays 0; p(a=1) must rise."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    policy = Categorical(action_space=spaces.Discrete(2))
    make_model = mlp()
    model = make_model(observation_space=ONE, num_outputs=2)
    rule = update(
        option,
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=8,
        n_steps=4,
        lr=0.01,
        lr_schedule="constant",  # the values this check was validated with
        ent_coef=0.0,
    )
    obs = np.zeros((8, 1), np.float32)
    clock = Clock()
    for _ in range(150):
        actions, extras = policy.act(model.outputs(obs), rng, clock)
        rule.storage.add(bandit_step(obs, actions, extras, (actions == 1).astype(float)))
        clock.env_steps += len(obs)  # as the agent counts them
        for batch in rule.storage.batches(clock):
            rule.learner.learn(batch, clock)
    p1 = torch.softmax(model(torch.zeros(1, 1)), 1)[0, 1].item()
    assert p1 > 0.9
