"""An env of your own: importing this module registers ``Corridor-v0`` with Gymnasium, so
``env.id=my_envs:Corridor-v0`` (see conf/env/corridor.yaml) finds it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class Corridor(gym.Env[np.ndarray, int]):
    """Walk right from cell 0 to cell ``length``: -1 per step, 0 at the goal."""

    def __init__(self, length: int = 8) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        self.position = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.position / self.length], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = 0
        return self._obs(), {}

    def step(self, action: int):
        self.position = max(0, self.position + (1 if int(action) == 1 else -1))
        done = self.position >= self.length
        return self._obs(), 0.0 if done else -1.0, done, False, {}


gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=100)
