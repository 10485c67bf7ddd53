"""Our numpy vector envs must match Gymnasium's single envs exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from twrl_exp.config import make
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
    env = make("env", id="MountainCar-v0", num_envs=3)
    assert isinstance(env, MountainCarVectorEnv)
    assert env.max_episode_steps == 200
    sync = make("env", id="MountainCar-v0", num_envs=3, vectorization="sync")
    assert not isinstance(sync, MountainCarVectorEnv)


def test_one_car_steps_exactly_as_the_vector_path_through_resets() -> None:
    """One car takes a path of its own (Python floats, not numpy calls); it must give the same
    numbers and the same random draws as the vector path, episode after episode."""
    one = MountainCarVectorEnv(num_envs=1, max_episode_steps=120)
    vector_path = MountainCarVectorEnv(num_envs=1, max_episode_steps=120)
    first = one.reset(seed=5)[0]
    np.testing.assert_array_equal(first, vector_path.reset(seed=5)[0])
    rng = np.random.default_rng(1)
    ends = 0
    for step in range(1500):
        # Pushing with the velocity most of the time reaches the goal; sometimes act at random.
        actions = (
            rng.integers(0, 3, 1) if step % 7 == 0 else np.array([2 if first[0, 1] >= 0 else 0])
        )
        got = one.step(actions)
        want = vector_path._step_all(actions)
        for a, b in zip(got[:4], want[:4], strict=True):
            assert a.dtype == b.dtype
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        # The float64 state too: a last-bit difference rarely shows in the float32 observation.
        np.testing.assert_array_equal(one.position, vector_path.position)
        np.testing.assert_array_equal(one.velocity, vector_path.velocity)
        first = got[0]
        ends += int(got[2][0] or got[3][0])
    assert ends >= 5  # several episodes ended (reached the goal or ran out), so several resets


def test_one_car_matches_gymnasium_for_whole_episodes() -> None:
    single = gym.make("MountainCar-v0").unwrapped
    vec = MountainCarVectorEnv(num_envs=1, max_episode_steps=10_000)
    vec.reset(seed=0)
    single.reset(seed=3)
    vec.position = np.array([single.state[0]], dtype=np.float64)
    rng = np.random.default_rng(2)
    done = False
    while not done:
        action = int(rng.integers(0, 3)) if rng.random() < 0.2 else 2 * int(single.state[1] >= 0)
        obs, reward, terminated, _, _ = vec.step(np.array([action]))
        o, r, term, _, _ = single.step(action)
        np.testing.assert_array_equal(obs[0], o)
        assert reward[0] == r
        assert terminated[0] == term
        done = term
    assert done
