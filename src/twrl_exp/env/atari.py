"""Atari through ale-py with the standard preprocessing (``env.preprocess=atari``; pip install
'twrl-exp[atari]').

The stack of Mnih et al. 2015 as rl-baselines3-zoo's ``AtariWrapper`` and CleanRL's
``ppo_atari.py`` build it, on Gymnasium's wrappers where they do the same thing:

- up to 30 no-op actions after a reset; each action repeated 4 frames, the observation the
  maximum of the last two (flicker); 84x84 grey (:class:`gymnasium.wrappers.AtariPreprocessing`);
- FIRE after a reset in games that need it to start, and in evaluations after a lost life
  (:class:`FireReset`);
- for training only: a lost life ends the agent's episode without resetting the game
  (:class:`EpisodicLife`: the next reset continues the same game), and rewards are clipped to
  their sign (:class:`gymnasium.wrappers.TransformReward`);
- 4 frames stacked, channels first (``[4, 84, 84]`` uint8;
  :class:`gymnasium.wrappers.FrameStackObservation`).

Evaluation envs (periodic and final evaluations, ``twrl_exp.evaluate``, videos) play whole
games and report raw scores: no life-loss ends, no clipping. Use the ``NoFrameskip-v4`` ids
(the zoo's and CleanRL's: no sticky actions, ALE's 108k-frame limit), not the ``ALE/*-v5``
ones, whose own frame skip would compound with the wrapper's.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np

from twrl_exp.errors import ConfigError

NOOP_MAX = 30
FRAME_SKIP = 4
SCREEN_SIZE = 84
FRAME_STACK = 4


def register() -> bool:
    """Register ale-py's ids with Gymnasium; False when ale-py is not installed."""
    try:
        ale_py = importlib.import_module("ale_py")
    except ImportError:
        return False
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on every env
    gym.register_envs(ale_py)
    return True


class EpisodicLife(gym.Wrapper[Any, Any, Any, Any]):
    """A lost life ends the episode for the learner (``terminated``); the following reset
    continues the same game with a no-op step unless the game itself ended (SB3's
    ``EpisodicLifeEnv``, Mnih et al. 2015)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self._ale_lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:  # a life was lost: carry on with the same game
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self._ale_lives()
        return obs, info


class FireReset(gym.Wrapper[Any, Any, Any, Any]):
    """Press FIRE (then the next action) after a reset, in games that wait for it; with
    ``on_life_loss`` (evaluation's whole games, where no reset follows a lost life) also after
    each lost life, as the training stack's reset does (the presses' rewards count)."""

    def __init__(self, env: gym.Env[Any, Any], *, on_life_loss: bool) -> None:
        super().__init__(env)
        self.on_life_loss = on_life_loss
        self.lives = 0

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._ale_lives()
        if self.on_life_loss and 0 < lives < self.lives and not (terminated or truncated):
            obs, extra, terminated, truncated, info = self.env.step(1)
            reward = float(reward) + float(extra)
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self.env.reset(seed=seed, options=options)
        obs: Any = None
        info: dict[str, Any] = {}
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.lives = self._ale_lives()
        return obs, info


def needs_fire(env: gym.Env[Any, Any]) -> bool:
    meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def preprocess(env: gym.Env[Any, Any], *, training: bool) -> gym.Wrapper[Any, Any, Any, Any]:
    """The standard stack around one ALE env (see the module's docstring)."""
    if not hasattr(env.unwrapped, "ale"):
        spec = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ConfigError(
            f"env.preprocess=atari needs an Atari game of ale-py (e.g. BreakoutNoFrameskip-v4), "
            f"but {spec} is not one; use env.preprocess=none."
        )
    skip = getattr(env.unwrapped, "_frameskip", 1)
    if skip != 1:
        spec = env.spec.id if env.spec is not None else "this env"
        raise ConfigError(
            f"env.preprocess=atari skips frames itself, but {spec} skips {skip} already; use "
            "its NoFrameskip-v4 id (e.g. BreakoutNoFrameskip-v4) or env.kwargs.frameskip=1."
        )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=NOOP_MAX,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    if training:
        env = EpisodicLife(env)
    if needs_fire(env):
        env = FireReset(env, on_life_loss=not training)
    if training:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(float(r))))
    return gym.wrappers.FrameStackObservation(env, FRAME_STACK)


__all__ = ["EpisodicLife", "FireReset", "preprocess", "register"]
