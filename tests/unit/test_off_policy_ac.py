"""SAC and TD3 (update/off_policy_ac.py): SAC's tanh-squashed log-prob, and both find the best
continuous action of a one-step problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tests.unit.learners import ONE, bandit_step, mlp, update
from twrl_exp.config import make
from twrl_exp.protocols import Clock


def test_tanh_normal_log_prob_has_the_change_of_variables_correction() -> None:
    policy = make("policy", "tanh_normal", action_space=spaces.Box(-2.0, 2.0, (2,), np.float32))
    torch.manual_seed(0)
    outputs = torch.randn(6, 4)
    action, log_prob = policy.rsample(outputs)
    mean, log_std = outputs[:, :2], outputs[:, 2:].clamp(-5, 2)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform()],
    )
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-3, atol=1e-3)
    assert policy.env_actions(np.array([[-1.0, 1.0]])).tolist() == [[-2.0, 2.0]]


@pytest.mark.parametrize("option", ["sac", "td3"])
def test_off_policy_actor_critics_find_the_best_continuous_action(option: str) -> None:
    """One-step episodes with reward -(a - 0.5)^2: the greedy action must approach 0.5."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    policy = make("policy", "tanh_normal" if option == "sac" else "deterministic", action_space=ONE)
    make_model = mlp()
    model = make_model(observation_space=ONE, num_outputs=policy.num_outputs)
    rule = update(
        option,
        model=model,
        make_model=make_model,
        policy=policy,
        num_envs=4,
        buffer_size=2000,
        batch_size=64,
        learning_starts=64,
        train_freq=1,
        gradient_steps=1,
        lr=3e-3,
        q_lr=None,  # critics at lr too, as this check was validated
        **({"target_policy_noise": 0.05, "policy_delay": 1} if option == "td3" else {}),
    )
    obs = np.zeros((4, 1), np.float32)
    clock = Clock()
    for _ in range(400):
        actions, extras = policy.act(model.outputs(obs), rng, clock)
        reward = -((policy.env_actions(actions)[:, 0] - 0.5) ** 2)
        rule.storage.add(bandit_step(obs, actions, extras, reward))
        clock.env_steps += len(obs)  # as the agent counts them
        for batch in rule.storage.batches(clock):
            rule.learner.learn(batch, clock)
    greedy, _ = policy.act(model.outputs(obs[:1]), rng, clock, greedy=True)
    # SAC's entropy bonus keeps its greedy action off 0.5 (0.14 to 0.20 over seeds 0-5, before
    # and after the seed tree); both start at 0, 0.5 away.
    assert abs(float(policy.env_actions(greedy)[0, 0]) - 0.5) < (0.25 if option == "sac" else 0.15)
