"""Observation and reward normalisation held by the agent (SB3's VecNormalize): the running
statistics, the scaled rewards, and that acting without learning neither moves nor loses them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from twrl_exp.build import build, build_agent, make_runner
from twrl_exp.errors import ConfigError
from twrl_exp.normalize import Normalizer, RunningMeanStd


def test_running_statistics_are_those_of_every_batch_together() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(int(n), 4)) for n in rng.integers(1, 20, size=30)]
    rms = RunningMeanStd((4,))
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, everything.var(axis=0), rtol=1e-4)


def test_rewards_are_scaled_by_the_std_of_the_discounted_return() -> None:
    """As VecNormalize: returns = returns * gamma + r; their variance scales r; an episode's
    end starts its env's return again; an autoreset row is no transition."""
    n, gamma = 2, 0.9
    norm = Normalizer(obs_shape=(1,), num_envs=n, obs=False, reward=True, clip=10.0, gamma=gamma)
    rng = np.random.default_rng(1)
    returns = np.zeros(n)
    ref = RunningMeanStd(())
    for _ in range(50):
        reward = rng.normal(5.0, 1.0, size=n)
        ended = rng.random(n) < 0.1
        valid = rng.random(n) > 0.1
        got = norm.reward(reward, ended & valid, valid)
        returns = np.where(valid, returns * gamma + reward, returns)
        ref.update(returns[valid])
        expected = np.clip(reward / np.sqrt(ref.var + 1e-8), -10, 10)
        np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-12)
        np.testing.assert_array_equal(got[~valid], reward[~valid])  # untouched
        returns[ended & valid] = 0.0
    np.testing.assert_allclose(norm.returns, returns)


def test_observations_are_centred_scaled_and_clipped() -> None:
    norm = Normalizer(obs_shape=(2,), num_envs=1, obs=True, reward=False, clip=2.0, gamma=0.99)
    norm.observe(np.array([[0.0, 10.0], [2.0, 30.0]]))
    out = norm.obs(np.array([[1.0, 20.0], [100.0, -100.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.0, 0.0], atol=1e-4)
    np.testing.assert_array_equal(out[1], [2.0, -2.0])  # clipped


def test_the_agent_trains_its_statistics_and_acting_freezes_them(make_cfg) -> None:
    cfg = make_cfg(
        "env=pendulum",
        "update=ppo",
        "update.n_steps=32",
        "update.num_minibatches=4",
        "env.normalize_obs=true",
        "env.normalize_reward=true",
        "train.max_env_steps=512",
        "eval.every_steps=null",
        "monitor=none",
    )
    built = build(cfg)
    try:
        runner = make_runner(cfg, built)
        runner.run()
        agent = built.agent
        norm = agent.normalizer
        assert norm is not None
        # every training observation counted (the first reset's, then one per vector step)
        assert norm.obs_rms.count == pytest.approx(
            1e-4 + 512 + cfg.env.num_envs, abs=cfg.env.num_envs
        )
        assert not np.allclose(norm.obs_rms.mean, 0.0)
        before = norm.state_dict()
        agent.act(np.ones((3, 3), dtype=np.float32))  # an evaluation's acting
        after = norm.state_dict()
        np.testing.assert_array_equal(before["obs_rms"]["mean"], after["obs_rms"]["mean"])
        assert before["obs_rms"]["count"] == after["obs_rms"]["count"]
        # the statistics travel with the weights: an agent rebuilt from them acts the same
        state = agent.state_dict()
        space = gym.make("Pendulum-v1")
        twin = build_agent(cfg, space.observation_space, space.action_space, 1)
        twin.load_state_dict(
            {
                "model": state["model"],
                "policy": state["policy"],
                "normalizer": state["normalizer"],
                "update": {},
            },
            weights_only=True,
        )
        obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
        np.testing.assert_array_equal(twin.act(obs), agent.act(obs))
        with pytest.raises(ConfigError, match="holds no statistics"):
            twin.load_state_dict(
                {"model": state["model"], "policy": state["policy"]}, weights_only=True
            )
    finally:
        built.close()


def test_normalising_discrete_observations_is_refused(make_cfg) -> None:
    cfg = make_cfg(
        "env=cliffwalking",
        "model=table",
        "policy=egreedy",
        "update=td_lambda",
        "env.normalize_obs=true",
    )
    space = gym.make("CliffWalking-v1")
    with pytest.raises(ConfigError, match=r"env\.normalize_obs=true needs float Box observations"):
        build_agent(cfg, space.observation_space, space.action_space, 1)
