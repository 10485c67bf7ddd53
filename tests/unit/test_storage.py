"""What is stored and when learning is due: whole episodes, rollouts and replay (n-step,
truncation, phantom)."""

from __future__ import annotations

import numpy as np
import pytest

from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, Step
from twrl_exp.storage import EpisodeStorage, ReplayStorage, RolloutStorage


def step(
    obs: list[float],
    action: list[int],
    reward: list[float],
    next_obs: list[float],
    *,
    terminated: list[bool] | None = None,
    truncated: list[bool] | None = None,
    valid: list[bool] | None = None,
) -> Step:
    n = len(obs)
    return Step(
        features=np.array(obs, np.float32)[:, None],
        actions=np.array(action),
        reward=np.array(reward, float),
        terminated=np.array(terminated or [False] * n),
        truncated=np.array(truncated or [False] * n),
        valid=np.array(valid or [True] * n),
        next_features=np.array(next_obs, np.float32)[:, None],
        next_outputs=np.zeros((n, 2)),
        next_actions=np.zeros(n, np.int64),
        extras={"log_prob": np.full(n, -0.5)},
    )


def replay(n_step: int = 1, **kwargs) -> ReplayStorage:
    settings = {
        "num_envs": 1,
        "feature_dim": 1,
        "action_shape": (),
        "action_dtype": np.dtype(np.int64),
        "buffer_size": 100,
        "batch_size": 4,
        "learning_starts": 0,
        "train_freq": 1,
        "gradient_steps": 1,
        "gamma": 0.5,
        "n_step": n_step,
        "seed": 0,
        **kwargs,
    }
    return ReplayStorage(**settings)


def stored(buffer: ReplayStorage) -> list[tuple[float, float, float, float]]:
    """``(obs, R, discount, next_obs)`` of every stored transition, in insertion order."""
    return [
        (
            float(buffer.obs[i, 0]),
            float(buffer.rewards[i]),
            float(buffer.discounts[i]),
            float(buffer.next_obs[i, 0]),
        )
        for i in range(buffer.size)
    ]


def test_one_step_replay_cuts_the_bootstrap_only_at_termination() -> None:
    buffer = replay()
    buffer.add(step([0.0], [1], [1.0], [1.0]))
    buffer.add(step([1.0], [0], [2.0], [9.0], truncated=[True]))  # final obs 9 bootstraps
    buffer.add(step([9.0], [0], [0.0], [5.0], valid=[False]))  # the autoreset step: skipped
    buffer.add(step([5.0], [1], [3.0], [6.0], terminated=[True]))
    assert stored(buffer) == [(0.0, 1.0, 0.5, 1.0), (1.0, 2.0, 0.5, 9.0), (5.0, 3.0, 0.0, 6.0)]


def test_n_step_transitions_sum_rewards_and_flush_at_the_episode_end() -> None:
    buffer = replay(n_step=3)
    for k in range(4):
        buffer.add(step([float(k)], [1], [1.0], [float(k + 1)]))
    buffer.add(step([4.0], [1], [1.0], [5.0], terminated=[True]))
    # (s0..s2 -> s3), (s1..s3 -> s4), then at termination s2.., s3.., s4.. cut to what is left
    assert stored(buffer) == [
        (0.0, 1.75, 0.125, 3.0),
        (1.0, 1.75, 0.125, 4.0),
        (2.0, 1.75, 0.0, 5.0),
        (3.0, 1.5, 0.0, 5.0),
        (4.0, 1.0, 0.0, 5.0),
    ]


def test_n_step_truncation_keeps_the_bootstrap_discount() -> None:
    buffer = replay(n_step=3)
    buffer.add(step([0.0], [1], [1.0], [1.0]))
    buffer.add(step([1.0], [1], [1.0], [7.0], truncated=[True]))
    assert stored(buffer) == [(0.0, 1.5, 0.25, 7.0), (1.0, 1.0, 0.5, 7.0)]


def test_learning_is_due_every_train_freq_steps_after_learning_starts() -> None:
    buffer = replay(learning_starts=6, train_freq=3, gradient_steps=2)
    due = []
    for k in range(12):
        buffer.add(step([float(k)], [0], [0.0], [float(k + 1)]))
        due.append([batch.gradient_steps for batch in buffer.batches(Clock(env_steps=k + 1))])
    assert due == [[], [], [], [], [], [2], [], [], [2], [], [], [2]]  # one batch of 2 minibatches
    batch = buffer.sample(2)
    assert batch.obs.shape == (2, 4, 1)
    assert batch.actions.shape == batch.rewards.shape == batch.discounts.shape == (2, 4)
    every = replay(gradient_steps=-1, train_freq=4)
    counts = []
    for k in range(8):
        every.add(step([float(k)], [0], [0.0], [float(k + 1)]))
        counts.append(sum(b.gradient_steps for b in every.batches(Clock(env_steps=k + 1))))
    assert counts == [0, 0, 0, 4, 0, 0, 0, 4]  # -1: as many as env steps since


def test_replay_state_round_trips_with_its_sampling_rng() -> None:
    buffer = replay(buffer_size=8)
    for k in range(11):  # wraps around the ring
        buffer.add(step([float(k)], [k % 2], [float(k)], [float(k + 1)]))
    copy = replay(buffer_size=8)
    copy.load_state_dict(buffer.state_dict())
    a, b = buffer.sample(), copy.sample()
    for key in ("obs", "actions", "rewards", "discounts", "next_obs"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert sorted(copy.obs[:, 0].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"batch_size": 0}, "update.batch_size=0"),
        ({"gradient_steps": 0}, "update.gradient_steps=0"),
        ({"train_freq": 0}, "update.train_freq=0"),
    ],
)
def test_bad_replay_settings_are_refused(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        replay(**kwargs)


def test_a_rollout_is_due_when_full_and_masks_the_autoreset_step() -> None:
    rollout = RolloutStorage(
        n_steps=3, num_envs=2, feature_dim=1, action_shape=(), action_dtype=np.dtype(np.int64)
    )
    rollout.add(step([0.0, 0.0], [1, 0], [1.0, 1.0], [1.0, 1.0], terminated=[True, False]))
    assert list(rollout.batches(Clock())) == []
    rollout.add(step([1.0, 1.0], [0, 1], [5.0, 1.0], [0.0, 2.0], valid=[False, True]))
    rollout.add(step([0.0, 2.0], [1, 1], [1.0, 1.0], [1.0, 3.0], truncated=[False, True]))
    (batch,) = list(rollout.batches(Clock()))
    assert batch.valid.tolist() == [[True, True], [False, True], [True, True]]
    assert batch.rewards[1].tolist() == [0.0, 1.0]  # the autoreset step's reward is dropped
    assert batch.ends.tolist() == [[True, False], [True, False], [False, True]]
    assert batch.terminated.tolist() == [[True, False], [False, False], [False, False]]
    assert batch.next_obs[2, :, 0].tolist() == [1.0, 3.0]  # bootstrap at the cut
    assert batch.log_prob.tolist() == [[-0.5, -0.5]] * 3
    assert list(rollout.batches(Clock())) == []  # emptied


def test_whole_episodes_are_handed_over_once_each_with_their_step_index() -> None:
    """Episodes of 1 to 300 steps in 3 envs, over many batches (the buffer grows and moves its
    rows): every step of every closed episode is handed over once, in one batch, with its index
    in the episode, and no step of an episode in flight or of an autoreset step."""
    rng = np.random.default_rng(0)
    num_envs, steps = 3, 6000
    storage = EpisodeStorage(
        num_envs=num_envs,
        feature_dim=1,
        action_shape=(),
        action_dtype=np.dtype(np.int64),
        steps_per_batch=50,
    )
    # The feature of a step is 1000 * episode number + index in the episode; the action its env.
    lengths = [rng.integers(1, 300, 100).tolist() for _ in range(num_envs)]
    episode, index = [0] * num_envs, [0] * num_envs
    closed: list[tuple[int, int]] = []  # (env, episode) in the order they end
    handed: list[tuple[int, float, int]] = []  # (env, feature, time_index) of the batches
    closed_by_last_batch = 0
    features = np.zeros((num_envs, 1), np.float32)
    actions = np.arange(num_envs)
    starting = np.zeros(num_envs, bool)
    for _ in range(steps):
        terminated = np.zeros(num_envs, bool)
        for n in range(num_envs):
            if starting[n]:  # autoreset step: a new episode's first observation
                episode[n], index[n] = episode[n] + 1, 0
            elif index[n] + 1 == lengths[n][episode[n]]:
                terminated[n] = True
                closed.append((n, episode[n]))
            else:
                index[n] += 1
        following = np.array([[1000.0 * e + i] for e, i in zip(episode, index, strict=True)])
        storage.add(
            Step(
                features=features,
                actions=actions,
                reward=np.ones(num_envs),
                terminated=terminated,
                truncated=np.zeros(num_envs, bool),
                valid=~starting,
                next_features=following.astype(np.float32),
                next_outputs=np.zeros((num_envs, 2)),
                next_actions=actions,
            )
        )
        for batch in storage.batches(Clock()):
            assert batch.mask.sum() == len(batch.obs) >= 50
            handed += zip(
                batch.actions.tolist(),
                batch.obs[:, 0].tolist(),
                batch.time_index.tolist(),
                strict=True,
            )
            closed_by_last_batch = len(closed)
        features, starting = following.astype(np.float32), terminated
    expected = [
        (n, 1000.0 * e + i, i)
        for n, e in closed[:closed_by_last_batch]
        for i in range(lengths[n][e])
    ]
    assert closed_by_last_batch > 100
    assert sorted(handed) == sorted(expected)
    assert storage.buffer.capacity > 256  # the buffer grew, and moved its rows on the way
