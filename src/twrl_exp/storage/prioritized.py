"""Proportional prioritised replay (Schaul et al. 2016): a replay buffer that samples
transitions by how much there is still to learn from them.

Transition ``i`` is kept with priority ``p_i = (|delta_i| + eps)^alpha``, ``delta_i`` its last
TD error, which the learner tells back after each learn (:meth:`PrioritizedReplayStorage.feedback`,
called by the agent); a new transition gets the largest ``|delta| + eps`` seen so far (to the
``alpha``), so it is sampled at least once soon. A minibatch of ``B`` is drawn stratified: the
total priority is cut into ``B`` equal segments and one transition drawn from each, with
probability ``P(i) = p_i / sum_k p_k`` overall (a sum tree finds it in ``log N``). The bias
this brings is corrected by importance-sampling weights
``w_i = (N P(i))^-beta / max_k w_k = (p_i / min_k p_k)^-beta`` that multiply each
transition's loss, with ``beta`` annealed linearly from ``priority_beta`` to 1 over the run's
step budget (the clock's env steps over ``train.max_env_steps``). ``alpha = 0`` and ``beta = 1``
is uniform replay.

With ``gradient_steps > 1`` the minibatches of one learn are drawn together, so their new
priorities count from the next learn on (the paper updates them after every minibatch; with
``train_freq`` env steps between learns, as DQN's defaults, the two are the same).

Every draw comes from the run's ``REPLAY`` stream (:mod:`twrl_exp.seeding`); a checkpoint keeps
the priorities, so a resumed run samples as the uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Unpack

import numpy as np

from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, State, entry
from twrl_exp.storage.replay import ReplayBatch, ReplaySettings, ReplayStorage
from twrl_exp.storage.sum_tree import SegmentTree


def importance_weights(priorities: np.ndarray, smallest: float, beta: float) -> np.ndarray:
    """``(N P(i))^-beta / max_k (N P(k))^-beta = (p_i / p_min)^-beta`` (Schaul et al. 2016,
    Algorithm 1, normalised by the largest weight in the buffer, as OpenAI Baselines): in
    ``(0, 1]``, 1 for the least likely transition.

    >>> importance_weights(np.array([1.0, 4.0]), 1.0, 0.5).tolist()
    [1.0, 0.5]
    """
    return (priorities / smallest) ** -beta


def annealed_beta(beta: float, progress: float) -> float:
    """``beta`` at ``progress`` (0 to 1) of the run: linear from ``beta`` to 1.

    >>> annealed_beta(0.4, 0.0), annealed_beta(0.4, 0.5), annealed_beta(0.4, 1.0)
    (0.4, 0.7, 1.0)
    """
    return beta + (1.0 - beta) * progress


class PrioritizedReplayStorage(ReplayStorage):
    """A :class:`ReplayStorage` sampled in proportion to priorities; takes feedback."""

    def __init__(
        self,
        *,
        priority_alpha: float,
        priority_beta: float,
        priority_eps: float,
        total_env_steps: int | None,
        **replay: Unpack[ReplaySettings],
    ) -> None:
        super().__init__(**replay)
        for name, value in (("priority_alpha", priority_alpha), ("priority_beta", priority_beta)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"update.{name}={value} is invalid: it must be in [0, 1].")
        if not priority_eps > 0.0:
            raise ConfigError(f"update.priority_eps={priority_eps} is invalid: it must be > 0.")
        if priority_beta < 1.0 and not total_env_steps:
            raise ConfigError(
                "update.prioritized=true anneals update.priority_beta to 1 over the step budget: "
                "set train.max_env_steps, or update.priority_beta=1."
            )
        self.alpha, self.beta0, self.eps = priority_alpha, priority_beta, priority_eps
        self.total_env_steps = total_env_steps
        self.sums = SegmentTree(self.capacity, minimum=False)
        self.minima = SegmentTree(self.capacity, minimum=True)
        self.max_error = 1.0  # the largest |delta| + eps told so far: new transitions get it
        self.beta = priority_beta

    def _put(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        discounts: np.ndarray,
        next_obs: np.ndarray,
    ) -> np.ndarray:
        index = super()._put(obs, actions, rewards, discounts, next_obs)
        self._prioritize(index, np.full(len(index), self.max_error**self.alpha))
        return index

    def _prioritize(self, index: np.ndarray, priorities: np.ndarray) -> None:
        self.sums.set(index, priorities)
        self.minima.set(index, priorities)

    def batches(self, clock: Clock) -> Iterator[ReplayBatch]:
        self.beta = annealed_beta(self.beta0, clock.progress(self.total_env_steps))
        return super().batches(clock)

    def sample(self, minibatches: int = 1) -> ReplayBatch:
        """``minibatches`` stratified draws of ``batch_size``, with their weights at the
        current ``beta``."""
        segment = self.sums.root() / self.batch_size
        offsets = np.arange(self.batch_size) + self.rng.random((minibatches, self.batch_size))
        index = self.sums.find_prefix(offsets * segment)
        weights = importance_weights(self.sums[index], self.minima.root(), self.beta)
        return self._gather(index, weights.astype(np.float32))

    def feedback(self, batch: ReplayBatch, errors: np.ndarray) -> None:
        """Priorities from the learner's ``|delta|`` of each transition of ``batch`` (``[G, B]``;
        a transition drawn twice keeps the last)."""
        if batch.index is None:
            raise ValueError("feedback on a batch without its buffer index")
        scaled = np.abs(np.asarray(errors, np.float64)).ravel() + self.eps
        self.max_error = max(self.max_error, float(scaled.max(initial=0.0)))
        self._prioritize(batch.index.ravel(), scaled**self.alpha)

    def state_dict(self) -> State:
        """The buffer's state, its priorities and the largest error told so far."""
        return {
            **super().state_dict(),
            "priorities": self.sums[np.arange(self.size)].copy(),
            "max_error": self.max_error,
        }

    def load_state_dict(self, state: State) -> None:
        super().load_state_dict(state)
        if "priorities" in state:  # saved by a prioritised buffer
            priorities = entry(state, "priorities", np.ndarray)
            self.max_error = float(entry(state, "max_error", float))
        else:  # saved by a uniform one: every transition as likely as a new one
            priorities = np.full(self.size, self.max_error**self.alpha)
        self.sums.reset(priorities)
        self.minima.reset(priorities)
