"""Our numpy vector envs must match Gymnasium's single envs exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from twrl_exp.env import make_vector_env
from twrl_exp.env.classic import MountainCarVectorEnv


def test_mountaincar_vector_env_matches_gymnasium_step_for_step() -> None:
    rng = np.random.default_rng(0)
    singles = [gym.make("MountainCar-v0").unwrapped for _ in range(4)]
    starts = [env.reset(seed=i)[0] for i, env in enumerate(singles)]
    vec = MountainCarVectorEnv(num_envs=4, max_episode_steps=10_000)
    vec.reset(seed=0)
    vec.position = np.array([float(s) for s, _ in (env.state for env in singles)])
    vec.velocity = np.zeros(4)
    np.testing.assert_array_equal(vec._obs(), np.stack(starts))
    for _ in range(300):
        actions = rng.integers(0, 3, 4)
        obs, reward, terminated, _, _ = vec.step(actions)
        if vec.prev_done.any():
            break
        for i, env in enumerate(singles):
            o, r, term, _, _ = env.step(int(actions[i]))
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r
            assert terminated[i] == term


def test_mountaincar_truncates_then_autoresets_next_step() -> None:
    env = MountainCarVectorEnv(num_envs=2, max_episode_steps=5)
    env.reset(seed=1)
    for _ in range(4):
        _, _, _, truncated, _ = env.step(np.array([1, 1]))
        assert not truncated.any()
    _, _, _, truncated, _ = env.step(np.array([1, 1]))
    assert truncated.all()
    obs, reward, terminated, truncated, _ = env.step(np.array([2, 2]))  # the reset step
    assert (reward == 0).all()
    assert not (terminated | truncated).any()
    assert ((obs[:, 0] >= -0.6) & (obs[:, 0] <= -0.4)).all()
    assert (obs[:, 1] == 0).all()


def test_auto_vectorization_picks_our_native_env() -> None:
    env = make_vector_env(id="MountainCar-v0", num_envs=3)
    assert isinstance(env, MountainCarVectorEnv)
    assert env.max_episode_steps == 200
    sync = make_vector_env(id="MountainCar-v0", num_envs=3, vectorization="sync")
    assert not isinstance(sync, MountainCarVectorEnv)
