"""Whole episodes from a vector env, stored time-major for Monte-Carlo updates.

Rows are vector steps, columns envs. An episode is *closed* when it ends; closed episodes are
handed to the update and forgotten, while episodes still in flight keep every row they have
(so no sample is discarded when an update happens mid-episode).

Every vector step pays for the bookkeeping here, so a step only writes its row and the episodes
it ends; which steps are closed is worked out once per batch, and rows are moved only when the
buffer is full.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twrl_exp.protocols import Clock, State, Step

_MAX_ROWS = 2_000_000


FLOAT32 = np.dtype(np.float32)  # features' dtype unless the model keeps its own


@dataclass(frozen=True)
class EpisodeBatch:
    """The closed episodes of a batch: the rows they span, time-major, and their steps.

    Rows are vector steps, columns envs; ``K`` is the number of closed steps.

    Attributes:
        rewards: ``[T, N]`` the reward that followed each step (meaningless outside ``mask``).
        end: ``[T, N]`` the step ended its episode (terminated or truncated).
        terminated: ``[T, N]`` the episode ended in a terminal state (read where ``end``).
        final_obs: ``[T, N, F]`` the final observation's features (read where ``end``).
        mask: ``[T, N]`` the step belongs to a closed episode handed over in this batch.
        index: ``[K]`` the positions of ``mask`` in the flattened ``[T * N]`` arrays.
        obs: ``[K, F]`` features of the closed steps, in ``index`` order.
        actions: ``[K, ...]`` their actions.
        time_index: ``[K]`` each step's index in its episode, from 0.
    """

    rewards: np.ndarray
    end: np.ndarray
    terminated: np.ndarray
    final_obs: np.ndarray
    mask: np.ndarray
    index: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    time_index: np.ndarray


class EpisodeBuffer:
    """Steps of ``num_envs`` parallel episodes, rows = vector steps, closed when episodes end.

    Rows ``[base, row)`` hold steps with their rewards; row ``row`` holds the decisions awaiting
    theirs.
    """

    def __init__(
        self,
        num_envs: int,
        feature_dim: int,
        action_shape: tuple[int, ...],
        dtype: np.dtype,
        feature_dtype: np.dtype = FLOAT32,
    ) -> None:
        self.num_envs = num_envs
        self.capacity = 256
        n = num_envs
        # the model's features as they are (uint8 frames stay uint8)
        self.obs = np.zeros((self.capacity, n, feature_dim), feature_dtype)
        self.actions = np.zeros((self.capacity, n, *action_shape), dtype)
        self.rewards = np.zeros((self.capacity, n), np.float64)
        self.time_index = np.zeros((self.capacity, n), np.int64)  # step of its episode, from 0
        self.end = np.zeros((self.capacity, n), bool)
        self.terminated = np.zeros((self.capacity, n), bool)
        # A decision of an episode (not the autoreset step after an end) not yet learnt from.
        self.live = np.zeros((self.capacity, n), bool)
        self.final_obs = np.zeros((self.capacity, n, feature_dim), feature_dtype)
        self.base = 0
        self.row = 0
        self.pending = np.zeros(n, bool)
        self.length = np.zeros(n, np.int64)  # steps of each env's episode in flight
        # Row of each env's latest episode end: its live rows up to there are closed episodes.
        self.last_end = np.full(n, -1, np.int64)
        self.ready_steps = 0
        self.opened = False

    def _arrays(self) -> list[str]:
        return ["obs", "actions", "rewards", "time_index", "end", "terminated", "live", "final_obs"]

    def _make_room(self) -> None:
        """Move the rows still needed to the front, into arrays twice as long if they fill more
        than half: each row is moved about once however often batches are taken."""
        kept = self.row - self.base
        capacity = self.capacity * 2 if kept > self.capacity // 2 else self.capacity
        if capacity > _MAX_ROWS:
            raise RuntimeError(
                "REINFORCE needs episodes that end: an episode ran past "
                f"{kept} steps; set env.max_episode_steps."
            )
        for name in self._arrays():
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), old.dtype) if capacity > len(old) else old
            new[:kept] = old[self.base : self.row].copy()
            setattr(self, name, new)
        self.capacity = capacity
        self.last_end -= self.base
        self.row, self.base = kept, 0

    def add_decisions(self, features: np.ndarray, actions: np.ndarray, active: np.ndarray) -> None:
        """Open a row with the decisions ``(s_t, a_t)`` of the envs in ``active``."""
        if self.row >= self.capacity:
            self._make_room()
        r = self.row
        self.obs[r] = features
        self.actions[r] = actions
        self.live[r] = active
        self.length += active
        np.subtract(self.length, 1, out=self.time_index[r])
        self.pending = active  # a fresh array from the caller, never changed in place

    def add_rewards(
        self,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_features: np.ndarray,
    ) -> np.ndarray:
        """Give the open row its rewards; close the episodes that ended. Returns ended mask."""
        r, live = self.row, self.pending
        # Stored as given: the reward of an autoreset step (no live episode) is never part of
        # a closed episode's return, since the return restarts at the end before it.
        self.rewards[r] = reward
        ended = live & (terminated | truncated)
        self.end[r] = ended
        if np.count_nonzero(ended):  # terminated and final_obs are read only where one ended
            self.terminated[r] = terminated
            self.final_obs[r, ended] = final_features[ended]
            self.last_end[ended] = r
            self.ready_steps += int(self.length[ended].sum())
            self.length[ended] = 0
        self.row += 1
        return ended

    def take_closed(self) -> EpisodeBatch:
        """Everything needed to learn from the closed episodes, then forget them. The
        ``[T, N]`` arrays are views of the buffer, valid until the next step is added."""
        rows = slice(self.base, self.row)
        mask = self.live[rows] & (np.arange(self.base, self.row)[:, None] <= self.last_end)
        index = np.flatnonzero(mask)  # (cheaper than selecting with the mask each time)

        def closed(name: str) -> np.ndarray:
            steps = getattr(self, name)[rows]
            return steps.reshape(-1, *steps.shape[2:])[index]

        batch = EpisodeBatch(
            rewards=self.rewards[rows],
            end=self.end[rows],
            terminated=self.terminated[rows],
            final_obs=self.final_obs[rows],
            mask=mask,
            index=index,
            obs=closed("obs"),
            actions=closed("actions"),
            time_index=closed("time_index"),
        )
        self.live[rows].reshape(-1)[index] = False
        # Keep from the first step of the earliest episode in flight (the open row's decisions
        # count in ``length``).
        starts = self.row + 1 - self.length[self.pending]
        self.base = int(starts.min()) if starts.size else self.row
        self.ready_steps = 0
        return batch


class EpisodeStorage:
    """Whole episodes, handed to learning once ``steps_per_batch`` steps of closed episodes
    exist (REINFORCE). Episodes in flight at resume are not kept: the env restarts them."""

    def __init__(
        self,
        *,
        num_envs: int,
        feature_dim: int,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
        steps_per_batch: int,
        feature_dtype: np.dtype = FLOAT32,
    ) -> None:
        self.steps_per_batch = steps_per_batch
        self.buffer = EpisodeBuffer(
            num_envs, feature_dim, action_shape, action_dtype, feature_dtype
        )

    def add(self, step: Step) -> None:
        buffer = self.buffer
        if not buffer.opened:
            buffer.add_decisions(step.features, step.actions, np.ones(len(step.reward), bool))
            buffer.opened = True
        ended = buffer.add_rewards(step.reward, step.terminated, step.truncated, step.next_features)
        buffer.add_decisions(step.next_features, step.next_actions, ~ended)

    def batches(self, clock: Clock) -> Iterator[EpisodeBatch]:
        del clock
        if self.buffer.ready_steps < self.steps_per_batch:
            return iter(())  # (asked every vector step: cheaper than an empty generator)
        return iter((self.buffer.take_closed(),))

    def state_dict(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> None:
        del state
