"""Observation and reward normalisation, as SB3's ``VecNormalize`` does it, but held by the
agent: its statistics are saved with the agent's weights (checkpoints, the logged model) and
frozen when it acts without learning (evaluations, videos, the pyfunc model), so an agent is
evaluated on the observations it was trained on, and a resumed run goes on with its
statistics.

- Observations: ``(obs - mean) / sqrt(var + 1e-8)`` clipped to ``[-clip, clip]``, with the
  running mean and variance of every training observation (Chan et al.'s parallel update).
- Rewards: divided by the running standard deviation of the discounted return (``gamma``),
  clipped to ``[-clip, clip]``; the learner sees these, the record keeps the env's own returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

EPSILON = 1e-8


class RunningMeanStd:
    """Running mean and variance over the first axis of the batches given (float64)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 1e-4  # SB3's: the first batch is nearly all of the estimate

    def update(self, batch: np.ndarray) -> None:
        if len(batch) == 0:
            return
        batch = np.asarray(batch, dtype=np.float64)
        mean, var, n = batch.mean(axis=0), batch.var(axis=0), len(batch)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        self.var = np.asarray(state["var"], dtype=np.float64).copy()
        self.count = float(state["count"])


class Normalizer:
    """The agent's normaliser (``env.normalize_obs``, ``env.normalize_reward``)."""

    def __init__(
        self,
        *,
        obs_shape: tuple[int, ...],
        num_envs: int,
        obs: bool,
        reward: bool,
        clip: float,
        gamma: float,
    ) -> None:
        self.normalize_obs, self.normalize_reward = obs, reward
        self.clip, self.gamma = clip, gamma
        self.obs_rms = RunningMeanStd(obs_shape)
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)

    def observe(self, obs: np.ndarray) -> None:
        """Training observations ``[N, ...]``: they move the statistics."""
        if self.normalize_obs:
            self.obs_rms.update(obs)

    def obs(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` as the agent sees it (the statistics as they are: nothing moves)."""
        if not self.normalize_obs:
            return obs
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + EPSILON)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def reward(self, reward: np.ndarray, ended: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The rewards the learner sees; ``ended``: episodes that end with this step, whose
        discounted returns start again; ``valid``: rows that are transitions."""
        if not self.normalize_reward:
            return reward
        self.returns = np.where(valid, self.returns * self.gamma + reward, self.returns)
        self.ret_rms.update(self.returns[valid])
        scaled = np.clip(reward / np.sqrt(self.ret_rms.var + EPSILON), -self.clip, self.clip)
        self.returns[ended] = 0.0
        return np.where(valid, scaled, reward).astype(np.asarray(reward).dtype, copy=False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "obs_rms": self.obs_rms.state_dict(),
            "ret_rms": self.ret_rms.state_dict(),
            "returns": self.returns.copy(),
        }

    def load_state_dict(self, state: Mapping[str, Any], *, statistics_only: bool = False) -> None:
        """Restore the statistics (and, for a resumed run, the running returns)."""
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        if not statistics_only and len(state["returns"]) == len(self.returns):
            self.returns = np.asarray(state["returns"], dtype=np.float64).copy()
