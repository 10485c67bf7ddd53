"""Tiny deterministic envs for tests, registered under the ``twrl_test/`` namespace."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ChainEnv(gym.Env[np.int64, np.int64]):
    """States 0..length-1 in a row. Action 1 steps right, action 0 stays. Reward 1 per step
    taken right; reaching the last state terminates."""

    def __init__(self, length: int = 5, render_mode: str | None = None) -> None:
        self.length = length
        self.observation_space = spaces.Discrete(length)
        self.action_space = spaces.Discrete(2)
        self.state = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = 0
        return np.int64(self.state), {}

    def step(self, action: Any):
        self.state = min(self.state + int(action), self.length - 1)
        reward = float(action)
        return np.int64(self.state), reward, self.state == self.length - 1, False, {}


class CrashEnv(gym.Env[np.ndarray, np.int64]):
    """CartPole-like spaces; raises on the ``crash_at``-th step (to test FAILED runs)."""

    def __init__(self, crash_at: int = 3000, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.crash_at = crash_at
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action: Any):
        self.steps += 1
        if self.steps >= self.crash_at:
            raise RuntimeError("CrashEnv crashed on purpose")
        return np.zeros(4, np.float32), 1.0, self.steps % 20 == 0, False, {}


def register() -> None:
    if "twrl_test/Chain-v0" not in gym.registry:
        gym.register("twrl_test/Chain-v0", entry_point=ChainEnv, max_episode_steps=20)
        gym.register("twrl_test/Crash-v0", entry_point=CrashEnv, max_episode_steps=100)


register()


def vector_env(**settings: Any) -> gym.vector.VectorEnv:
    """``twrl_exp.env.make_vector_env`` with :class:`~twrl_exp.config.EnvConfig`'s defaults
    (their one home) for every setting not given, and ``training`` (default True)."""
    from dataclasses import fields

    from twrl_exp.config import EnvConfig
    from twrl_exp.env import make_vector_env

    defaults = EnvConfig()
    given = {f.name: getattr(defaults, f.name) for f in fields(EnvConfig) if f.name[0] != "_"}
    return make_vector_env(**{**given, **settings})
