"""Whole episodes from a vector env, stored time-major for Monte-Carlo updates.

Rows are vector steps, columns envs. An episode is *closed* when it ends; closed episodes are
handed to the update and forgotten, while episodes still in flight keep every row they have
(so no sample is discarded when an update happens mid-episode).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from twrl_exp.protocols import Step

_MAX_ROWS = 2_000_000


class EpisodeBuffer:
    """Steps of ``num_envs`` parallel episodes, rows = vector steps, closed when episodes end."""

    def __init__(self, num_envs: int, feature_dim: int, action_shape: tuple[int, ...], dtype: Any):
        self.num_envs = num_envs
        self.capacity = 256
        n = num_envs
        self.obs = np.zeros((self.capacity, n, feature_dim), np.float32)
        self.actions = np.zeros((self.capacity, n, *action_shape), dtype)
        self.rewards = np.zeros((self.capacity, n), np.float64)
        self.time_index = np.zeros((self.capacity, n), np.int64)
        self.end = np.zeros((self.capacity, n), bool)
        self.terminated = np.zeros((self.capacity, n), bool)
        self.closed = np.zeros((self.capacity, n), bool)
        self.final_obs = np.zeros((self.capacity, n, feature_dim), np.float32)
        self.row = 0
        self.pending = np.zeros(n, bool)
        self.episode_start = np.zeros(n, np.int64)
        self.ready_steps = 0
        self.opened = False

    def _arrays(self) -> list[str]:
        return [
            "obs",
            "actions",
            "rewards",
            "time_index",
            "end",
            "terminated",
            "closed",
            "final_obs",
        ]

    def _grow(self) -> None:
        if self.capacity * 2 > _MAX_ROWS:
            raise RuntimeError(
                "REINFORCE needs episodes that end: an episode ran past "
                f"{self.capacity} steps; set env.max_episode_steps."
            )
        for name in self._arrays():
            old = getattr(self, name)
            new = np.zeros((self.capacity * 2, *old.shape[1:]), old.dtype)
            new[: self.capacity] = old
            setattr(self, name, new)
        self.capacity *= 2

    def add_decisions(
        self, features: np.ndarray, actions: np.ndarray, new_episode: np.ndarray, active: np.ndarray
    ) -> None:
        """Open a row with the decisions ``(s_t, a_t)`` of the envs in ``active``."""
        if self.row >= self.capacity:
            self._grow()
        r = self.row
        previous = self.time_index[r - 1] + 1 if r > 0 else np.zeros(self.num_envs, np.int64)
        self.obs[r] = features
        self.actions[r] = actions
        self.time_index[r] = np.where(new_episode, 0, previous)
        self.episode_start[new_episode & active] = r
        self.pending = active.copy()

    def add_rewards(
        self,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_features: np.ndarray,
    ) -> np.ndarray:
        """Give the open row its rewards; close the episodes that ended. Returns ended mask."""
        r, live = self.row, self.pending
        self.rewards[r] = np.where(live, reward, 0.0)
        ended = live & (terminated | truncated)
        self.end[r] = ended
        self.terminated[r] = live & terminated
        if ended.any():
            self.final_obs[r, ended] = final_features[ended]
            for env in np.flatnonzero(ended):
                start = self.episode_start[env]
                self.closed[start : r + 1, env] = True
                self.ready_steps += r + 1 - start
        self.row += 1
        return ended

    def take_closed(self) -> dict[str, np.ndarray]:
        """Everything needed to learn from the closed episodes, then forget them."""
        rows = slice(0, self.row)
        batch = {name: getattr(self, name)[rows].copy() for name in self._arrays()}
        mask = batch["closed"].copy()
        self._compact(mask)
        batch["mask"] = mask
        return batch

    def _compact(self, consumed: np.ndarray) -> None:
        self.closed[: self.row][consumed] = False
        keep_from = int(self.episode_start[self.pending].min()) if self.pending.any() else self.row
        keep = self.row - keep_from + 1
        for name in self._arrays():
            arr = getattr(self, name)
            arr[:keep] = arr[keep_from : self.row + 1].copy()
        self.episode_start -= keep_from
        self.row -= keep_from
        self.ready_steps = 0


class EpisodeStorage:
    """Whole episodes, handed to learning once ``steps_per_batch`` steps of closed episodes
    exist (REINFORCE). Episodes in flight at resume are not kept: the env restarts them."""

    def __init__(
        self,
        *,
        num_envs: int,
        feature_dim: int,
        action_shape: tuple[int, ...],
        action_dtype: Any,
        steps_per_batch: int,
    ) -> None:
        self.steps_per_batch = steps_per_batch
        self.buffer = EpisodeBuffer(num_envs, feature_dim, action_shape, action_dtype)
        self.env_steps = 0  # vector-step slots since the last batch (the lr schedule's clock)

    def add(self, step: Step) -> None:
        buffer = self.buffer
        self.env_steps += len(step.reward)
        if not buffer.opened:
            everyone = np.ones(len(step.reward), bool)
            buffer.add_decisions(step.features, step.actions, everyone, everyone)
            buffer.opened = True
        ended = buffer.add_rewards(step.reward, step.terminated, step.truncated, step.next_features)
        buffer.add_decisions(step.next_features, step.next_actions, ~step.valid, ~ended)

    def batches(self) -> Iterator[dict[str, Any]]:
        if self.buffer.ready_steps >= self.steps_per_batch:
            batch: dict[str, Any] = dict(self.buffer.take_closed())
            batch["env_steps"], self.env_steps = self.env_steps, 0
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
