"""Policies that act on action values (epsilon-greedy, greedy) and the uniform random policy."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from twrl_exp.errors import ConfigError, describe_space
from twrl_exp.protocols import Clock, Metrics


def greedy_mask(q_values: np.ndarray) -> np.ndarray:
    """``[N, n]`` bool: which actions attain the maximum value in each row."""
    return q_values == np.maximum.reduce(q_values, axis=1, keepdims=True)


class EGreedy:
    """Epsilon-greedy over action values, ties broken uniformly at random.

    Two schedules, read off the run's clock: per finished episode,
    ``epsilon_k = max(min_epsilon, epsilon * decay**k)`` (Sutton & Barto's tabular setting);
    or, with ``exploration_fraction``, per env step, linear from ``epsilon`` to
    ``final_epsilon`` over that fraction of ``total_env_steps`` (DQN, Mnih et al. 2015; SB3 and
    CleanRL count it the same way).
    """

    # It reads the model's outputs as action values (what a dueling head makes).
    reads_action_values = True

    def __init__(
        self,
        *,
        action_space: spaces.Space[Any],
        total_env_steps: int | None = None,
        epsilon: float,
        decay: float,
        min_epsilon: float,
        exploration_fraction: float | None,
        final_epsilon: float,
    ) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError(
                f"policy=egreedy needs a Discrete action space, but the env's is "
                f"{describe_space(action_space)}; for continuous actions use policy=normal "
                "(reinforce, a2c, ppo), tanh_normal (sac) or deterministic (td3)."
            )
        checks = [("epsilon", epsilon), ("decay", decay), ("min_epsilon", min_epsilon)]
        checks += [("final_epsilon", final_epsilon)]
        if exploration_fraction is not None:
            checks.append(("exploration_fraction", exploration_fraction))
        for name, value in checks:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"policy.{name}={value} is invalid: it must lie in [0, 1].")
        if exploration_fraction is not None and not total_env_steps:
            raise ConfigError(
                "policy.exploration_fraction needs a step budget: set train.max_env_steps "
                "(or use policy.decay, per episode, instead)."
            )
        self.num_outputs = int(action_space.n)
        self.action_shape: tuple[int, ...] = ()
        self.action_dtype = np.dtype(np.int64)
        self.start = int(action_space.start)
        self.initial_epsilon = epsilon
        self.decay = decay
        self.min_epsilon = min_epsilon
        self.final_epsilon = final_epsilon
        self.schedule_steps = (
            None
            if exploration_fraction is None
            else max(1, int(exploration_fraction * (total_env_steps or 0)))
        )
        self.kernels: Any = None

    def use_kernels(self, kernels: Any) -> None:
        """Sample with compiled ``kernels`` (``update.backend=numba``:
        :mod:`twrl_exp.update._td_kernels`), or with numpy if None; the draws and actions are
        identical."""
        self.kernels = kernels

    def epsilon(self, clock: Clock) -> float:
        """Epsilon at the time ``clock`` says."""
        if self.schedule_steps is not None:
            progress = clock.progress(self.schedule_steps)
            return self.initial_epsilon + progress * (self.final_epsilon - self.initial_epsilon)
        return max(self.min_epsilon, self.initial_epsilon * self.decay**clock.episodes)

    def greedy(self, q_values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ties = greedy_mask(q_values)
        return (rng.random(q_values.shape) * ties).argmax(axis=1)

    def sample(self, q_values: np.ndarray, rng: np.random.Generator, eps: float) -> np.ndarray:
        """Epsilon-greedy actions with ``eps``."""
        if self.kernels is not None and eps > 0.0:
            # One draw of N * A + N uniforms is the same stream as the two draws below.
            uniforms = rng.random(q_values.size + len(q_values))
            actions, count = self.kernels.egreedy_actions(q_values, uniforms, eps)
            if count:
                actions[actions < 0] = rng.integers(0, self.num_outputs, count)
            return actions
        actions = self.greedy(q_values, rng)
        if eps > 0.0:
            explore = rng.random(len(actions)) < eps
            count = np.count_nonzero(explore)
            if count:  # drawing none leaves the generator as it was, and costs ~10 us
                actions[explore] = rng.integers(0, self.num_outputs, count)
        return actions

    def act(
        self, q_values: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if greedy:
            return self.greedy(q_values, rng), {}
        return self.sample(q_values, rng, self.epsilon(clock)), {}

    def probabilities(self, q_values: np.ndarray, clock: Clock) -> np.ndarray:
        """``pi(a|s)`` of every action: ``[N, n]``."""
        ties = greedy_mask(q_values)
        eps = self.epsilon(clock)
        return eps / self.num_outputs + (1.0 - eps) * ties / ties.sum(axis=1, keepdims=True)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions + self.start if self.start else actions

    def stats(self, clock: Clock) -> Metrics:
        return {"policy/epsilon": self.epsilon(clock)}


def Greedy(*, action_space: spaces.Space[Any], total_env_steps: int | None = None) -> EGreedy:
    """Always the best action by value: epsilon-greedy with epsilon = 0."""
    return EGreedy(
        action_space=action_space,
        total_env_steps=total_env_steps,
        epsilon=0.0,
        decay=1.0,
        min_epsilon=0.0,
        exploration_fraction=None,
        final_epsilon=0.0,
    )


class RandomPolicy:
    """Uniformly random actions from any Discrete, MultiDiscrete or bounded Box space.

    On a Discrete space it asks the model for one output per action, so a Q-learner can learn
    the greedy values off-policy while behaving uniformly at random.
    """

    needs_outputs = False
    evaluation = "random actions"  # its "greedy" evaluation is as random as its training

    def __init__(
        self, *, action_space: spaces.Space[Any], total_env_steps: int | None = None
    ) -> None:
        del total_env_steps
        if isinstance(action_space, spaces.Box) and not action_space.is_bounded():
            raise ConfigError(
                f"policy=random needs a bounded action space, but the env's is "
                f"{describe_space(action_space)}."
            )
        if not isinstance(action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.Box):
            raise ConfigError(f"policy=random cannot sample from {describe_space(action_space)}.")
        self.action_space = action_space
        self.num_outputs = int(action_space.n) if isinstance(action_space, spaces.Discrete) else 0
        self.action_shape: tuple[int, ...] = tuple(action_space.shape or ())
        self.action_dtype = np.dtype(action_space.dtype or np.int64)

    def probabilities(self, outputs: np.ndarray, clock: Clock) -> np.ndarray:
        """Uniform ``pi(a|s)`` over a Discrete space: ``[N, n]``."""
        del clock
        if not isinstance(self.action_space, spaces.Discrete):
            raise ConfigError("policy=random has action probabilities only for Discrete actions.")
        return np.full((len(outputs), self.num_outputs), 1.0 / self.num_outputs)

    def sample(self, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``outputs: [N, 0]`` (the empty model's) -> ``N`` uniformly random actions (for a
        Discrete space, the action's index: ``env_actions`` adds the space's start)."""
        num_envs = len(outputs)
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return rng.integers(0, space.n, num_envs)
        if isinstance(space, spaces.MultiDiscrete):
            return space.start + rng.integers(0, space.nvec, (num_envs, *space.nvec.shape))
        return rng.uniform(space.low, space.high, (num_envs, *space.shape)).astype(space.dtype)

    def greedy(self, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.sample(outputs, rng)

    def act(
        self, outputs: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        del clock, greedy
        return self.sample(outputs, rng), {}

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        space = self.action_space
        if isinstance(space, spaces.Discrete) and space.start:
            return actions + space.start
        return actions

    def stats(self, clock: Clock) -> Metrics:
        del clock
        return {}
