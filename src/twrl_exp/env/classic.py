"""Numpy-vectorised classic-control envs that Gymnasium implements only one copy at a time.

``MountainCarVectorEnv`` steps ``num_envs`` cars with exactly MountainCar-v0's dynamics (Moore
1990; Gymnasium's ``MountainCarEnv``), in next-step autoreset mode like Gymnasium's own
``CartPoleVectorEnv``: the step after an episode ends resets that car, ignores its action and
returns reward 0. A unit test checks step-for-step equality with Gymnasium's env.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


class MountainCarVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    metadata = {  # noqa: RUF012  (Gymnasium declares it a plain class attribute)
        "render_modes": [],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    min_position, max_position, max_speed = -1.2, 0.6, 0.07
    goal_position, force, gravity = 0.5, 0.001, 0.0025

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 200,
        goal_velocity: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError("MountainCarVectorEnv does not render; use gym.make for videos.")
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.goal_velocity = goal_velocity
        low = np.array([self.min_position, -self.max_speed], dtype=np.float32)
        high = np.array([self.max_position, self.max_speed], dtype=np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.position = np.zeros(num_envs)
        self.velocity = np.zeros(num_envs)
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.prev_done = np.zeros(num_envs, dtype=bool)

    def _obs(self) -> np.ndarray:
        return np.stack([self.position, self.velocity], axis=1).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-0.6, -0.4, self.num_envs)
        self.velocity = np.zeros(self.num_envs)
        self.steps[:] = 0
        self.prev_done[:] = False
        return self._obs(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.num_envs == 1:
            return self._step_one(actions)
        return self._step_all(actions)

    def _step_one(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One car in Python floats: numpy's cost per call, not the maths, bounded a one-car
        step (65 us against gym.make's 36). The same operations in the same order as
        :meth:`_step_all` and Gymnasium's env (``math.cos`` is Gymnasium's), so the same
        numbers, and the same random draws."""
        (action,) = np.asarray(actions).reshape(1).tolist()
        position, velocity = self.position.item(), self.velocity.item()
        velocity += (action - 1) * self.force + math.cos(3 * position) * (-self.gravity)
        velocity = min(max(velocity, -self.max_speed), self.max_speed)
        position = min(max(position + velocity, self.min_position), self.max_position)
        if position == self.min_position and velocity < 0:
            velocity = 0.0
        terminated = position >= self.goal_position and velocity >= self.goal_velocity
        steps = self.steps.item() + 1
        truncated = steps >= self.max_episode_steps
        reward = -1.0
        if self.prev_done.item():
            position = self.np_random.uniform(-0.6, -0.4, 1).item()
            velocity, steps, reward, terminated, truncated = 0.0, 0, 0.0, False, False
        self.position[0], self.velocity[0], self.steps[0] = position, velocity, steps
        self.prev_done[0] = terminated or truncated
        return (
            np.array([[position, velocity]], dtype=np.float32),
            np.array([reward]),
            np.array([terminated]),
            np.array([truncated]),
            {},
        )

    def _step_all(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        # Same operation order as Gymnasium's MountainCarEnv, so results match bit for bit.
        velocity = self.velocity + (
            (actions - 1) * self.force + np.cos(3 * self.position) * (-self.gravity)
        )
        velocity = np.minimum(np.maximum(velocity, -self.max_speed), self.max_speed)
        position = np.minimum(
            np.maximum(self.position + velocity, self.min_position), self.max_position
        )
        velocity[(position == self.min_position) & (velocity < 0)] = 0.0
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        self.steps += 1
        truncated = self.steps >= self.max_episode_steps
        reward = np.full(self.num_envs, -1.0)

        reset = self.prev_done
        if reset.any():
            position[reset] = self.np_random.uniform(-0.6, -0.4, int(reset.sum()))
            velocity[reset] = 0.0
            self.steps[reset] = 0
            reward[reset] = 0.0
            terminated[reset] = False
            truncated[reset] = False
        self.position, self.velocity = position, velocity
        self.prev_done = terminated | truncated
        return self._obs(), reward, terminated, truncated, {}


# Ids whose copies we can step as one numpy vector env although Gymnasium has no vector entry.
NATIVE_VECTOR_ENVS: dict[str, type[MountainCarVectorEnv]] = {
    "MountainCar-v0": MountainCarVectorEnv,
}
