"""Videos: one greedy episode, every frame of it, encoded while it is rendered."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest


class Balancer:
    """A greedy CartPole agent that balances for a while (lean of the pole plus its speed)."""

    def act(self, obs: np.ndarray, greedy: bool = True) -> np.ndarray:
        assert greedy
        return np.array([int(obs[0][2] + obs[0][3] > 0)])


def make_env() -> gym.Env:
    return gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=60)


class NoRenderMode(gym.Env):
    """A user's env as users write them: no ``render_mode`` argument, no ``render()``."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 8) -> None:
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 1.0, True, False, {}


class RendersNothing(NoRenderMode):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def render(self):
        return None


class UndeclaredRenderMode(NoRenderMode):
    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode


class Runner:
    agent = Balancer()
    history = type("History", (), {"env_steps": 100})()


def video_monitor(make: object, uploads: list, notes: list) -> object:
    from twrl_exp.monitor.video import VideoMonitor

    return VideoMonitor(
        make_env=make,  # type: ignore[arg-type]
        upload=lambda path, name: uploads.append(name),
        seed=0,
        every_evals=1,
        unavailable=notes.append,
    )


def test_an_env_that_cannot_render_makes_no_video_and_says_so_once() -> None:
    for env_class, why in (
        (NoRenderMode, "unexpected keyword argument 'render_mode'"),
        (RendersNothing, "render() returned NoneType"),
        (UndeclaredRenderMode, "render() raised AssertionError"),
    ):
        gym.register("TwrlTest/NoVideo-v0", entry_point=env_class)
        try:
            uploads: list[str] = []
            notes: list[str] = []
            monitor = video_monitor(
                lambda: gym.make("TwrlTest/NoVideo-v0", render_mode="rgb_array"), uploads, notes
            )
            monitor.evaluation(Runner(), np.zeros(1))  # type: ignore[attr-defined]
            assert monitor.finishing("FINISHED") is None  # type: ignore[attr-defined]
            monitor.finish(Runner(), "FINISHED")  # type: ignore[attr-defined]
        finally:
            del gym.registry["TwrlTest/NoVideo-v0"]
        assert uploads == []
        assert len(notes) == 1
        assert why in notes[0]


def test_any_other_error_of_a_recording_still_fails_it() -> None:
    def broken() -> gym.Env:
        raise TypeError("an unrelated bug in the user's env")

    monitor = video_monitor(broken, [], [])
    with pytest.raises(TypeError, match="unrelated bug"):
        monitor.finish(Runner(), "FINISHED")  # type: ignore[attr-defined]
