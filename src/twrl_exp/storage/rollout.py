"""Fixed-length rollouts of ``n_steps`` x ``num_envs`` for on-policy learning (A2C, PPO).

Row ``t`` of env ``n`` holds the decision ``(s_t, a_t, log pi(a_t|s_t))``, what followed
(``r_t``, terminated, truncated) and the observation that followed, ``s_{t+1}``: the true final
observation where an episode ended, so a truncated episode bootstraps from it and the cut at the
end of the rollout bootstraps from the last row's ``s_{t+1}``. The autoreset step after an
episode end is stored with ``valid = False`` and carries no weight in learning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twrl_exp.protocols import Clock, State, Step

FLOAT32 = np.dtype(np.float32)  # features' dtype unless the model keeps its own


@dataclass(frozen=True)
class RolloutBatch:
    """A complete rollout, time-major: every array is ``[T, N, ...]`` (``T = n_steps``).

    Attributes:
        obs: features of ``s_t``; ``next_obs`` those of ``s_{t+1}`` (the true final
            observation where an episode ended, the bootstrap at the cut in the last row).
        actions: ``a_t``; ``log_prob``: ``log pi(a_t|s_t)`` when it was taken.
        rewards: ``r_t``, 0 at autoreset steps.
        terminated: ``s_{t+1}`` is terminal (no bootstrap); False at autoreset steps.
        ends: the return stops accumulating after ``t`` (terminated, truncated, or an
            autoreset step).
        valid: the row is a transition (False at the autoreset step after an episode end).
    """

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    log_prob: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    ends: np.ndarray
    valid: np.ndarray


class RolloutStorage:
    """Rows of ``num_envs`` steps; when ``n_steps`` rows are full, one :class:`RolloutBatch`."""

    # The decision after a batch begins the next rollout: the agent makes it again with the
    # policy just learned (as SB3 and CleanRL do), so no sample of a rollout was drawn by the
    # policy before the last update (``Agent.decide_again``).
    acts_after_learning = True

    def __init__(
        self,
        *,
        n_steps: int,
        num_envs: int,
        feature_dim: int,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
        feature_dtype: np.dtype = FLOAT32,
    ) -> None:
        t, n = n_steps, num_envs
        self.n_steps = n_steps
        # the model's features as they are (uint8 frames stay uint8: a quarter of the memory)
        self.obs = np.zeros((t, n, feature_dim), feature_dtype)
        self.next_obs = np.zeros((t, n, feature_dim), feature_dtype)
        self.actions = np.zeros((t, n, *action_shape), action_dtype)
        self.log_prob = np.zeros((t, n), np.float32)
        self.rewards = np.zeros((t, n), np.float64)
        self.terminated = np.zeros((t, n), bool)
        self.ends = np.zeros((t, n), bool)
        self.valid = np.zeros((t, n), bool)
        self.row = 0

    def add(self, step: Step) -> None:
        r = self.row
        self.obs[r] = step.features
        self.next_obs[r] = step.next_features
        self.actions[r] = step.actions
        if "log_prob" in step.extras:
            self.log_prob[r] = step.extras["log_prob"]
        self.rewards[r] = np.where(step.valid, step.reward, 0.0)
        self.terminated[r] = step.terminated & step.valid
        self.ends[r] = (step.terminated | step.truncated) | ~step.valid
        self.valid[r] = step.valid
        self.row += 1

    def batches(self, clock: Clock) -> Iterator[RolloutBatch]:
        del clock
        if self.row < self.n_steps:
            return
        self.row = 0
        yield RolloutBatch(
            obs=self.obs.copy(),
            next_obs=self.next_obs.copy(),
            actions=self.actions.copy(),
            log_prob=self.log_prob.copy(),
            rewards=self.rewards.copy(),
            terminated=self.terminated.copy(),
            ends=self.ends.copy(),
            valid=self.valid.copy(),
        )

    def state_dict(self) -> State:
        # A rollout in flight at a checkpoint is not kept: a resumed run collects a fresh one.
        return {}

    def load_state_dict(self, state: State) -> None:
        del state
        self.row = 0
