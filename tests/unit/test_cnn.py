"""model=cnn: the torsos' shapes, the image restored from flat features in either channel
order, integer frames scaled, the arch chosen by image size, and bad spaces refused; MinAtar's
envs: registered ids, seeded games, frames for videos, a missing package said in one sentence."""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from tests.envs import vector_env
from twrl_exp.config import CNNConfig
from twrl_exp.env import make_render_env, missing_dependency, resolve_spec
from twrl_exp.errors import ConfigError
from twrl_exp.model import CNN


def _cnn(space: spaces.Space[Any], **overrides: Any) -> CNN:
    defaults = CNNConfig()
    settings: dict[str, Any] = {
        "arch": defaults.arch,
        "hidden_sizes": list(defaults.hidden_sizes),
        "activation": defaults.activation,
        "critic_hidden_sizes": defaults.critic_hidden_sizes,
        "channels_first": defaults.channels_first,
        "dueling": defaults.dueling,
    }
    num_outputs = overrides.pop("num_outputs", 6)
    settings.update(overrides)
    torch.manual_seed(0)
    return CNN(observation_space=space, num_outputs=num_outputs, **settings)


ATARI = spaces.Box(0, 255, (4, 84, 84), np.uint8)  # stacked grey frames, channels first
MINATAR = spaces.Box(0, 1, (10, 10, 4), np.bool_)  # MinAtar's grids, channels last


@pytest.mark.parametrize(
    ("space", "arch", "resolved"),
    [
        (ATARI, "auto", "nature"),
        (ATARI, "impala", "impala"),
        (MINATAR, "auto", "minatar"),
        (MINATAR, "impala", "impala"),
        (spaces.Box(0, 255, (64, 64, 3), np.uint8), "nature", "nature"),
    ],
)
def test_each_torso_maps_a_batch_of_images_to_outputs(
    space: spaces.Box, arch: str, resolved: str
) -> None:
    net = _cnn(space, arch=arch)
    assert net.arch == resolved
    obs = np.stack([space.sample() for _ in range(3)])
    features = net.features(obs)
    assert features.shape == (3, int(np.prod(space.shape)))
    assert features.dtype == space.dtype  # frames stored as they are (uint8, bool)
    out = net(torch.from_numpy(features))
    assert out.shape == (3, 6)
    assert np.allclose(net.outputs(features), out.detach().numpy(), atol=1e-6)
    loss = out.pow(2).sum()
    loss.backward()  # every layer learns
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_the_channel_order_is_read_from_the_observation() -> None:
    """The same weights give the same outputs on [H, W, C] images and their [C, H, W]
    transposes: channels last are moved first before the torso, not reinterpreted."""
    last = _cnn(MINATAR, arch="minatar")
    first_space = spaces.Box(0, 1, (4, 10, 10), np.bool_)
    first = _cnn(first_space, arch="minatar")
    assert not last.channels_first
    assert first.channels_first
    first.load_state_dict(last.state_dict())
    obs = np.stack([MINATAR.sample() for _ in range(5)])
    a = last.outputs(last.features(obs))
    b = first.outputs(first.features(obs.transpose(0, 3, 1, 2)))
    assert np.allclose(a, b, atol=1e-6)
    # an explicit order overrides the guess
    wrong = _cnn(MINATAR, arch="minatar", channels_first=True)
    assert wrong.channels_first


def test_integer_frames_are_scaled_to_the_unit_interval_and_booleans_are_not() -> None:
    assert _cnn(ATARI).scale == pytest.approx(1 / 255)
    assert _cnn(MINATAR).scale == 1.0
    net = _cnn(ATARI)
    frames = np.full((1, 4, 84, 84), 255, np.uint8)
    ones = torch.ones(1, 4, 84, 84)
    expected = net.head(net.torso(ones))
    assert torch.allclose(net(torch.from_numpy(net.features(frames))), expected, atol=1e-5)


def test_a_dueling_head_is_value_plus_centred_advantages() -> None:
    net = _cnn(MINATAR, dueling=True, num_outputs=3)
    x = torch.from_numpy(net.features(np.stack([MINATAR.sample() for _ in range(4)])))
    raw = net.head(net.torso(x.reshape(4, 10, 10, 4).permute(0, 3, 1, 2).float()))
    q = net(x)
    assert q.shape == (4, 3)
    expected = raw[:, :1] + raw[:, 1:] - raw[:, 1:].mean(dim=1, keepdim=True)
    assert torch.allclose(q, expected)


@pytest.mark.parametrize(
    ("space", "overrides", "message"),
    [
        (spaces.Box(-1, 1, (8,), np.float32), {}, "model=cnn reads images"),
        (spaces.Discrete(4), {}, "model=cnn reads images"),
        (MINATAR, {"arch": "nature"}, "model.arch=nature needs images of at least 36x36"),
        (MINATAR, {"arch": "resnet"}, "model.arch=resnet is invalid"),
        (MINATAR, {"hidden_sizes": [0]}, "model.hidden_sizes=[0] must all be >= 1"),
    ],
)
def test_bad_spaces_and_settings_are_refused_in_one_sentence(
    space: spaces.Space[Any], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _cnn(space, **overrides)


def _breakout(num_envs: int) -> gym.vector.VectorEnv:
    return vector_env(id="MinAtar/Breakout-v1", num_envs=num_envs)


def test_minatar_games_are_registered_with_the_minimal_action_sets() -> None:
    for game, actions, channels in [
        ("Asterix", 5, 4),
        ("Breakout", 3, 4),
        ("Freeway", 3, 7),
        ("Seaquest", 6, 10),
        ("SpaceInvaders", 4, 6),
    ]:
        env = gym.make(f"MinAtar/{game}-v1")
        assert env.action_space == spaces.Discrete(actions), game
        assert env.observation_space.shape == (10, 10, channels), game
        assert env.observation_space.dtype == np.bool_
        assert env.spec is not None
        assert env.spec.max_episode_steps == 10_000
        env.close()


def test_a_seeded_minatar_game_replays_exactly_sticky_actions_included() -> None:
    def play(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        env = _breakout(2)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(7)
        frames, rewards, dones = [obs], [], []
        for _ in range(300):
            obs, reward, terminated, truncated, _ = env.step(rng.integers(0, 3, size=2))
            frames.append(obs)
            rewards.append(reward)
            dones.append(terminated | truncated)
        env.close()
        return np.array(frames), np.array(rewards), np.array(dones)

    a, b, c = play(3), play(3), play(4)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    assert a[2].any()  # episodes ended within 300 random steps (a random player loses fast)
    assert not np.array_equal(a[0], c[0])  # another seed, another game


def test_minatar_renders_coloured_frames_for_videos() -> None:
    env = make_render_env(
        id="MinAtar/Breakout-v1", kwargs=None, max_episode_steps=None, preprocess="none"
    )
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (160, 160, 3)
    assert frame.dtype == np.uint8
    occupied = obs.any(axis=2)
    cells = frame[::16, ::16]  # one pixel per grid cell
    assert (cells[~occupied] == 0).all()  # empty cells are black ...
    assert (cells[occupied].sum(axis=1) > 0).all()  # ... objects are not
    env.close()


def test_a_missing_minatar_is_said_with_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minatar", None)  # import minatar -> ImportError
    with pytest.raises(ImportError) as caught:
        gym.make("MinAtar/Breakout-v1")
    error = missing_dependency(resolve_spec("MinAtar/Breakout-v1"), caught.value)
    assert str(error).startswith("env.id=MinAtar/Breakout-v1 cannot be built: ")
    assert str(error).endswith("; pip install 'twrl-exp[minatar]'.")


def test_a2c_trains_on_minatar_where_short_rollouts_often_have_no_reward(make_cfg) -> None:
    """A2C's 5-step rollouts of one MinAtar env are often all unrewarded: their returns do not
    vary, explained variance is undefined there, and that is no divergence (it was reported as
    one at env step 30)."""
    from twrl_exp.build import build, make_runner

    cfg = make_cfg(
        "env=minatar_breakout",
        "update=a2c",
        "train.max_env_steps=600",
        "eval.every_steps=null",
        "eval.final=false",
        "monitor=none",
    )
    built = build(cfg, evaluation=False)
    try:
        runner = make_runner(cfg, built)
        runner.run()
        assert runner.history.env_steps >= 600
    finally:
        built.close()
