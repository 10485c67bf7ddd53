"""Details of the deep-RL rules that a zoo user would notice, each as SB3 and CleanRL have it:
PPO's value clipping (off by default; when on, its own range, never annealed), random actions
before off-policy continuous rules learn, SAC's temperature learning rate, on-policy rules'
first decision of each rollout made by the updated policy."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.unit.test_stacked_ppo import member, rollout
from twrl_exp import seeding
from twrl_exp.build import build_agent
from twrl_exp.config import PPOConfig
from twrl_exp.protocols import Clock

END_OF_BUDGET = [
    "update.clip_schedule=linear",  # the policy's clip range anneals to 0 at the budget
    "update.lr_schedule=constant",
    "update.max_grad_norm=null",  # no global norm: the critic's step is its own loss's
    "train.max_env_steps=10000",
]


def critic_after_one_update(make_cfg, env_steps: int, *overrides: str) -> list[torch.Tensor]:
    learner, _, cfg = member(make_cfg, 0, *END_OF_BUDGET, *overrides)
    t, n = cfg["update"]["n_steps"], cfg.env.num_envs
    batch = rollout(learner, t, n, np.random.default_rng(0))
    torch.manual_seed(0)  # the minibatch order
    learner.learn(batch, Clock(env_steps=env_steps))
    return [p.detach().clone() for p in learner.critic.parameters()]


def test_the_value_loss_is_not_clipped_by_default() -> None:
    assert PPOConfig().clip_vloss is False


@pytest.mark.parametrize("range_", [[], ["update.clip_vloss_coef=0.05"]])
def test_value_clipping_keeps_its_range_while_the_policy_clip_anneals(make_cfg, range_) -> None:
    """At the end of a linear clip schedule the policy's clip range is ~0; the critic's update
    must be what it is at the start (its clip range does not anneal), not a frozen critic."""
    clipped = ["update.clip_vloss=true", *range_]
    start = critic_after_one_update(make_cfg, 0, *clipped)
    end = critic_after_one_update(make_cfg, 9_999, *clipped)
    before = critic_after_one_update(make_cfg, 0, *clipped, "update.update_epochs=1")
    for a, b in zip(start, end, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ... and it did learn (not a critic that never moves, which would pass the line above).
    assert any(not torch.equal(a, b) for a, b in zip(start, before, strict=True))


def test_the_value_clip_range_is_its_own_coef(make_cfg) -> None:
    """A tiny value range keeps the critic nearer where it was than a wide one (whatever
    clip_coef says: both have the default 0.2)."""
    learner, _, _ = member(make_cfg, 0, *END_OF_BUDGET)
    initial = [p.detach().clone() for p in learner.critic.parameters()]

    def moved(coef: str) -> float:
        after = critic_after_one_update(
            make_cfg, 0, "update.clip_vloss=true", f"update.clip_vloss_coef={coef}"
        )
        return sum(float((a - b).abs().sum()) for a, b in zip(after, initial, strict=True))

    assert moved("1e-6") < 0.5 * moved("100.0")


PENDULUM = gym.make("Pendulum-v1")
CARTPOLE = gym.make("CartPole-v1")


@pytest.mark.parametrize("rule", ["ppo", "a2c"])
def test_each_rollouts_first_decision_is_the_updated_policys(make_cfg, rule) -> None:
    """SB3 and CleanRL collect a rollout with the policy of the last update, its first step
    included: the action and log-probability the agent keeps for the next rollout's first
    step are those of the policy after the update, not before it (one sample in n_steps
    would otherwise be a policy behind: A2C's n_steps is 5)."""
    n_steps, n = 4, 2
    cfg = make_cfg(
        "env=cartpole", "model=mlp", "policy=categorical", f"update={rule}",
        f"update.n_steps={n_steps}", f"env.num_envs={n}", "update.lr=0.05",
    )  # fmt: skip
    agent = build_agent(cfg, CARTPOLE.observation_space, CARTPOLE.action_space, n)
    rng = np.random.default_rng(0)
    no = np.zeros(n, dtype=bool)
    agent.start(rng.normal(size=(n, 4)).astype(np.float32))
    for _ in range(n_steps - 1):
        agent.step(rng.normal(size=(n, 4)).astype(np.float32), np.ones(n), no, no, no)
    untrained = copy.deepcopy(agent.model)
    env_actions, _ = agent.step(rng.normal(size=(n, 4)).astype(np.float32), np.ones(n), no, no, no)
    assert agent.clock.updates == 1
    features, actions, extras = agent._prev
    np.testing.assert_array_equal(env_actions, agent.policy.env_actions(actions))

    def log_prob(model) -> np.ndarray:
        logits = torch.as_tensor(model.outputs(features))
        return agent.policy.log_prob(logits, torch.as_tensor(actions)).numpy()

    np.testing.assert_allclose(extras["log_prob"], log_prob(agent.model), rtol=0, atol=1e-5)
    assert np.abs(log_prob(untrained) - log_prob(agent.model)).max() > 1e-3  # it did learn


def actions_of(make_cfg, rule: str, *overrides: str, steps: int = 60) -> np.ndarray:
    """The env actions an agent of ``rule`` takes over ``steps`` vector steps on Pendulum
    (observations drawn at random: only the acting matters), ``[steps, num_envs, 1]``."""
    policy = {"sac": "tanh_normal", "td3": "deterministic"}[rule]
    cfg = make_cfg("env=pendulum", "model=mlp", f"policy={policy}", f"update={rule}", *overrides)
    space = PENDULUM.observation_space
    agent = build_agent(cfg, space, PENDULUM.action_space, cfg.env.num_envs)
    rng = np.random.default_rng(0)
    n = cfg.env.num_envs

    def obs() -> np.ndarray:
        return rng.normal(size=(n, 3)).astype(np.float32)

    taken = [agent.start(obs())]
    no = np.zeros(n, dtype=bool)
    for _ in range(steps - 1):
        actions, _ = agent.step(obs(), np.zeros(n), no, no, no)
        taken.append(actions)
    return np.stack(taken)


@pytest.mark.parametrize("rule", ["sac", "td3"])
def test_off_policy_rules_act_uniformly_at_random_until_learning_starts(make_cfg, rule) -> None:
    """As SB3 and CleanRL: uniform over the env's action box before learning_starts (the
    agent's policy stream's uniform draws, whatever the actor says), the policy's own actions
    after, and throughout with random_start=false."""
    n, steps = 2, 50  # envs; vector steps of each phase
    # No learning needed: only the acting is looked at.
    late = ["update.train_freq=100000", f"env.num_envs={n}", "seed=3"]
    starts = f"update.learning_starts={steps * n}"
    taken = actions_of(make_cfg, rule, starts, *late, steps=2 * steps)
    stream = seeding.generator(3, seeding.Stream.POLICY)
    uniform = np.stack([stream.uniform(-1.0, 1.0, (n, 1)) for _ in range(2 * steps)])
    unit = uniform.astype(np.float32).astype(np.float64)
    expected = (-2.0 + (unit + 1.0) * 0.5 * 4.0).astype(np.float32)  # Pendulum's box: [-2, 2]
    np.testing.assert_allclose(taken[:steps], expected[:steps], rtol=0, atol=1e-6)
    assert not np.isclose(taken[steps:], expected[steps:]).any()
    own = actions_of(make_cfg, rule, starts, "update.random_start=false", *late, steps=steps)
    assert not np.isclose(own, expected[:steps]).any()
    if rule == "td3":  # an untrained deterministic actor explores with small noise only
        assert own.std() < 0.5 * taken[:steps].std()


def test_sac_temperature_learns_at_q_lr_as_its_config_says(make_cfg) -> None:
    """SACConfig: ``q_lr`` is the critics' and the temperature's learning rate (CleanRL's
    sac_continuous_action.py), ``lr`` the actor's; with q_lr null, lr for all."""
    cfg = make_cfg(
        "env=pendulum", "policy=tanh_normal", "update=sac", "update.lr=1e-4", "update.q_lr=2e-3"
    )
    space = PENDULUM.observation_space
    learner = build_agent(cfg, space, PENDULUM.action_space, 1).update.learner
    assert learner.alpha_optimizer.param_groups[0]["lr"] == 2e-3
    cfg = make_cfg(
        "env=pendulum", "policy=tanh_normal", "update=sac", "update.lr=1e-4", "update.q_lr=null"
    )
    learner = build_agent(cfg, space, PENDULUM.action_space, 1).update.learner
    assert learner.alpha_optimizer.param_groups[0]["lr"] == 1e-4
