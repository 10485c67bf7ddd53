"""Atari's standard preprocessing (env.preprocess=atari, ale-py): stacked 84x84 grey uint8
frames; in training a lost life ends the learner's episode but not the game and rewards are
clipped to their sign; evaluations play whole games for raw scores; frame-skipping ids and a
missing ale-py are refused in one sentence; frames are stored as uint8, not float32."""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tests.envs import vector_env
from twrl_exp.build import build
from twrl_exp.env import atari, make_render_env, resolve_spec
from twrl_exp.errors import ConfigError


def _env(env_id: str, *, training: bool, num_envs: int = 1) -> gym.vector.VectorEnv:
    return vector_env(id=env_id, num_envs=num_envs, preprocess="atari", training=training)


def _lives(env: gym.vector.VectorEnv) -> int:
    return int(env.envs[0].unwrapped.ale.lives())  # type: ignore[attr-defined]


def test_observations_are_four_stacked_84x84_grey_uint8_frames() -> None:
    env = _env("BreakoutNoFrameskip-v4", training=True, num_envs=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84)
    assert obs.dtype == np.uint8
    assert env.single_action_space == gym.spaces.Discrete(4)
    obs, *_ = env.step(np.array([1, 1]))
    assert obs.max() > 0  # the screen, not a blank
    env.close()


def test_in_training_a_lost_life_ends_the_episode_but_not_the_game() -> None:
    env = _env("BreakoutNoFrameskip-v4", training=True)
    env.reset(seed=0)
    assert _lives(env) == 5
    ends, lives_after = 0, []
    rng = np.random.default_rng(0)
    for _ in range(3000):
        _, _, terminated, _truncated, _ = env.step(rng.integers(0, 4, size=1))
        if terminated[0]:
            ends += 1
        elif ends and not lives_after:
            lives_after.append(_lives(env))  # the step after the reset that followed
        if ends >= 2:
            break
    env.close()
    assert ends >= 2
    assert lives_after == [4]  # the game went on with one life fewer: no reset to 5


def test_evaluation_plays_whole_games() -> None:
    env = _env("BreakoutNoFrameskip-v4", training=False)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        _, _, terminated, truncated, _ = env.step(rng.integers(0, 4, size=1))
        if terminated[0] or truncated[0]:
            break
        last = _lives(env)
    env.close()
    assert terminated[0]
    assert last == 1


def _rewards(env_id: str, *, training: bool, steps: int) -> np.ndarray:
    env = _env(env_id, training=training)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    rewards = [
        env.step(rng.integers(0, env.single_action_space.n, size=1))[1][0] for _ in range(steps)
    ]
    env.close()
    return np.asarray(rewards)


def test_rewards_are_clipped_in_training_and_raw_in_evaluation() -> None:
    """SpaceInvaders scores 5 to 30 points an invader: clipped to 1 for the learner."""
    raw = _rewards("SpaceInvadersNoFrameskip-v4", training=False, steps=400)
    clipped = _rewards("SpaceInvadersNoFrameskip-v4", training=True, steps=400)
    assert raw.max() >= 5
    assert set(np.unique(clipped)) <= {0.0, 1.0}
    assert clipped.max() == 1.0


def test_videos_show_the_full_colour_screen_of_a_preprocessed_env() -> None:
    env = make_render_env(
        id="PongNoFrameskip-v4", kwargs=None, max_episode_steps=None, preprocess="atari"
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84)  # the agent sees what it trained on ...
    frame = env.render()
    assert frame.shape == (210, 160, 3)
    assert frame.dtype == np.uint8
    env.close()


def test_ids_that_skip_frames_themselves_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"ALE/Breakout-v5 skips 4 already; use its NoFrame"):
        _env("ALE/Breakout-v5", training=True)


def test_a_missing_ale_py_is_said_with_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ale_py", None)
    assert atari.register() is False
    with pytest.raises(ConfigError) as caught:
        resolve_spec("NotAGameNoFrameskip-v4")
    assert str(caught.value) == (
        "env.id=NotAGameNoFrameskip-v4 is an Atari game, which needs ale-py; "
        "pip install 'twrl-exp[atari]'."
    )


@pytest.mark.parametrize(
    ("overrides", "dtype"),
    [
        (("env=atari_pong", "update=dqn", "update.buffer_size=64"), np.uint8),
        (("env=atari_pong", "update=ppo", "update.n_steps=8"), np.uint8),
        (("env=atari_pong", "update=reinforce", "update.baseline=value"), np.uint8),
        (("env=minatar_breakout", "update=dqn", "update.buffer_size=64"), np.bool_),
        (("env=cartpole", "update=dqn", "update.buffer_size=64"), np.float32),
    ],
)
def test_storages_keep_frames_in_their_own_dtype(
    make_cfg, overrides: tuple[str, ...], dtype: Any
) -> None:
    """A replay of 100k Atari transitions is 5.6 GB as uint8 and 22.6 GB as float32."""
    built = build(make_cfg(*overrides, "env.num_envs=1"), evaluation=False)
    storage = built.agent.update.storage
    built.close()
    if hasattr(storage, "buffer"):  # REINFORCE's episodes
        assert storage.buffer.obs.dtype == dtype
        assert storage.buffer.final_obs.dtype == dtype
    else:
        assert storage.obs.dtype == dtype
        assert storage.next_obs.dtype == dtype


def test_the_atari_stack_on_an_env_that_is_no_atari_game_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _env("CartPole-v1", training=True)
    assert str(caught.value) == (
        "env.preprocess=atari needs an Atari game of ale-py (e.g. BreakoutNoFrameskip-v4), "
        "but CartPole-v1 is not one; use env.preprocess=none."
    )


def test_sac_and_td3_from_images_are_refused_with_the_rules_that_can(make_cfg) -> None:
    for rule in ("sac", "td3"):
        cfg = make_cfg("env.id=CarRacing-v3", "model=cnn", f"update={rule}", "env.num_envs=1")
        with pytest.raises(ConfigError, match=r"model=cnn cannot read .* use update=ppo or"):
            build(cfg, evaluation=False)


def test_reinforce_with_a_value_baseline_learns_from_uint8_frames(make_cfg) -> None:
    from twrl_exp.build import make_runner

    cfg = make_cfg(
        "env=atari_breakout",  # a lost life ends an episode within a few hundred steps
        "update=reinforce",
        "update.baseline=value",
        "update.steps_per_batch=64",
        "env.num_envs=1",
        "train.max_env_steps=300",
        "eval.every_steps=null",
        "eval.final=false",
        "monitor=none",
    )
    built = build(cfg, evaluation=False)
    try:
        runner = make_runner(cfg, built)
        runner.run()
        assert built.agent.clock.gradient_steps > 0  # it learned, value net included
    finally:
        built.close()
