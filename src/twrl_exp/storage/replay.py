"""A replay buffer for off-policy learning (DQN, SAC, TD3), with n-step transitions.

Each stored transition is ``(s, a, R, d, s')`` with ``R = sum_{k<m} gamma^k r_k`` over the
``m <= n_step`` rewards that followed ``(s, a)`` and ``d`` the discount of the bootstrap
``max_a Q(s', a)`` (or ``Q(s', pi(s'))``): ``gamma^m``, or 0 when the episode terminated within
them. A truncated episode keeps ``d = gamma^m`` and ``s'`` its true final observation, so it
bootstraps; the autoreset step after an episode end is never stored.

Learning is due every ``train_freq`` env steps of the run's clock once it has taken
``learning_starts``:
one :class:`ReplayBatch` of ``gradient_steps`` minibatches of ``batch_size`` (``-1``: as many
as env steps since the last time), as in Stable-Baselines3; sampled uniformly, with
replacement, by the run's ``REPLAY`` stream (:mod:`twrl_exp.seeding`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import numpy as np

from twrl_exp import seeding
from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Clock, State, Step, entry, integer
from twrl_exp.returns import n_step_return

FLOAT32 = np.dtype(np.float32)  # features' dtype unless the model keeps its own


@dataclass(frozen=True)
class ReplayBatch:
    """``G`` minibatches of ``B`` stored transitions ``(s, a, R, d, s')``, one per gradient step:
    every array is ``[G, B, ...]``.

    Attributes:
        obs: features of ``s``; ``next_obs`` those of ``s'`` (a truncated episode's true
            final observation).
        actions: ``a`` as the policy made it.
        rewards: ``R``, the discounted sum of the ``m <= n_step`` rewards that followed.
        discounts: ``d``, the bootstrap's weight: ``gamma^m``, or 0 after termination.
        index: where in the buffer each transition is kept (``[G, B]``), so that what the
            learner finds out about it can be told back (prioritised replay's ``feedback``);
            None in a batch made by hand.
        weights: importance-sampling weights of a non-uniform sample (``[G, B]``, at most 1) that
            the loss of each transition is multiplied by; None: uniform, all weigh alike.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    next_obs: np.ndarray
    index: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def gradient_steps(self) -> int:
        return len(self.rewards)


class ReplaySettings(TypedDict):
    """:class:`ReplayStorage`'s arguments, as one typed mapping (``ReplayStorage(**settings)``)."""

    num_envs: int
    feature_dim: int
    action_shape: tuple[int, ...]
    action_dtype: np.dtype
    buffer_size: int
    batch_size: int
    learning_starts: int
    train_freq: int
    gradient_steps: int
    gamma: float
    n_step: int
    seed: int
    feature_dtype: NotRequired[np.dtype]


class ReplayStorage:
    """A ring buffer of ``buffer_size`` transitions, sampled when learning is due."""

    def __init__(
        self,
        *,
        num_envs: int,
        feature_dim: int,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
        buffer_size: int,
        batch_size: int,
        learning_starts: int,
        train_freq: int,
        gradient_steps: int,
        gamma: float,
        n_step: int,
        seed: int,
        feature_dtype: np.dtype = FLOAT32,
    ) -> None:
        for name, value, low in (
            ("buffer_size", buffer_size, 1),
            ("batch_size", batch_size, 1),
            ("learning_starts", learning_starts, 0),
            ("train_freq", train_freq, 1),
            ("n_step", n_step, 1),
        ):
            if value < low:
                raise ConfigError(f"update.{name}={value} is invalid: it must be >= {low}.")
        if gradient_steps == 0 or gradient_steps < -1:
            raise ConfigError(
                f"update.gradient_steps={gradient_steps} is invalid: it must be >= 1, or -1 "
                "(as many as env steps collected)."
            )
        self.capacity = buffer_size
        self.batch_size, self.learning_starts = batch_size, learning_starts
        self.train_freq, self.gradient_steps = train_freq, gradient_steps
        self.gamma, self.n_step = gamma, n_step
        self.rng = seeding.generator(seed, seeding.Stream.REPLAY)
        c = buffer_size
        # the model's features as they are: Atari's uint8 frames take a quarter of float32's
        self.obs = np.zeros((c, feature_dim), feature_dtype)
        self.next_obs = np.zeros((c, feature_dim), feature_dtype)
        self.actions = np.zeros((c, *action_shape), action_dtype)
        self.rewards = np.zeros(c, np.float32)
        self.discounts = np.zeros(c, np.float32)
        self.size = 0
        self.cursor = 0
        self.learned_at = 0  # the clock's env steps when learning was last due
        self.pending: list[deque[tuple[np.ndarray, np.ndarray, float]]] = [
            deque() for _ in range(num_envs)
        ]

    # ------------------------------------------------------------------ writing

    def _put(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        discounts: np.ndarray,
        next_obs: np.ndarray,
    ) -> np.ndarray:
        """Write ``count`` transitions at the cursor; where they went (``[count]``)."""
        count = len(rewards)
        index = (self.cursor + np.arange(count)) % self.capacity
        self.obs[index], self.actions[index] = obs, actions
        self.rewards[index], self.discounts[index] = rewards, discounts
        self.next_obs[index] = next_obs
        self.cursor = int((self.cursor + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)
        return index

    def add(self, step: Step) -> None:
        valid = step.valid
        if self.n_step == 1:
            ended = step.terminated[valid]
            self._put(
                step.features[valid],
                step.actions[valid],
                step.reward[valid],
                np.where(ended, 0.0, self.gamma),
                step.next_features[valid],
            )
            return
        for env in np.flatnonzero(valid):
            self._add_n_step(step, int(env))

    def _add_n_step(self, step: Step, env: int) -> None:
        queue = self.pending[env]
        queue.append((step.features[env], step.actions[env], float(step.reward[env])))
        terminated, truncated = bool(step.terminated[env]), bool(step.truncated[env])
        if len(queue) == self.n_step and not (terminated or truncated):
            self._emit(queue, step.next_features[env], terminated=False)
            queue.popleft()
        elif terminated or truncated:
            while queue:  # every suffix of the ended episode, down to one step
                self._emit(queue, step.next_features[env], terminated=terminated)
                queue.popleft()

    def _emit(
        self,
        queue: deque[tuple[np.ndarray, np.ndarray, float]],
        next_obs: np.ndarray,
        *,
        terminated: bool,
    ) -> None:
        obs, action, _ = queue[0]
        total, discount = n_step_return(np.array([r for _, _, r in queue]), terminated, self.gamma)
        self._put(obs[None], action[None], np.array([total]), np.array([discount]), next_obs[None])

    # ------------------------------------------------------------------ reading

    def sample(self, minibatches: int = 1) -> ReplayBatch:
        """``minibatches`` minibatches of ``batch_size`` transitions."""
        index = self.rng.integers(0, self.size, (minibatches, self.batch_size))
        return self._gather(index, None)

    def _gather(self, index: np.ndarray, weights: np.ndarray | None) -> ReplayBatch:
        return ReplayBatch(
            obs=self.obs[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            discounts=self.discounts[index],
            next_obs=self.next_obs[index],
            index=index,
            weights=weights,
        )

    def batches(self, clock: Clock) -> Iterator[ReplayBatch]:
        since = clock.env_steps - self.learned_at
        if (
            clock.env_steps < self.learning_starts
            or self.size < self.batch_size
            or since < self.train_freq
        ):
            return iter(())
        self.learned_at = clock.env_steps
        return iter((self.sample(self.gradient_steps if self.gradient_steps > 0 else since),))

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> State:
        """The filled part of the buffer, its cursor and its sampling RNG (n-step sequences in
        flight are dropped: a resumed run restarts its episodes)."""
        filled = slice(0, self.size)
        return {
            "obs": self.obs[filled].copy(),
            "next_obs": self.next_obs[filled].copy(),
            "actions": self.actions[filled].copy(),
            "rewards": self.rewards[filled].copy(),
            "discounts": self.discounts[filled].copy(),
            "size": self.size,
            "cursor": self.cursor,
            "learned_at": self.learned_at,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: State) -> None:
        size = integer(state, "size")
        for name in ("obs", "next_obs", "actions", "rewards", "discounts"):
            getattr(self, name)[:size] = state[name]
        self.size, self.cursor = size, integer(state, "cursor")
        if "learned_at" in state:
            self.learned_at = integer(state, "learned_at")
        else:  # saved before the run's clock told a replay buffer when learning is due
            self.learned_at = integer(state, "collected") - integer(state, "since_learning")
        self.rng.bit_generator.state = entry(state, "rng", dict)
        for queue in self.pending:
            queue.clear()
