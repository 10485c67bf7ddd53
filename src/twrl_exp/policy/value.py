"""Policies that act on action values (epsilon-greedy, greedy) and the uniform random policy."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from twrl_exp.errors import ConfigError, describe_space


def greedy_mask(q_values: np.ndarray) -> np.ndarray:
    """``[N, n]`` bool: which actions attain the maximum value in each row."""
    return q_values == q_values.max(axis=1, keepdims=True)


class EGreedy:
    """Epsilon-greedy over action values, ties broken uniformly at random.

    ``epsilon_k = max(min_epsilon, epsilon * decay**k)`` after ``k`` finished episodes.
    """

    def __init__(
        self,
        *,
        action_space: spaces.Space[Any],
        rng: np.random.Generator,
        epsilon: float = 0.1,
        decay: float = 1.0,
        min_epsilon: float = 0.0,
    ) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError(
                f"policy=egreedy needs a Discrete action space, but the env's is "
                f"{describe_space(action_space)};"
                " use policy=normal with update=reinforce for continuous actions."
            )
        for name, value in (("epsilon", epsilon), ("decay", decay), ("min_epsilon", min_epsilon)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"policy.{name}={value} is invalid: it must lie in [0, 1].")
        self.num_outputs = int(action_space.n)
        self.start = int(action_space.start)
        self.rng = rng
        self.initial_epsilon = epsilon
        self.decay = decay
        self.min_epsilon = min_epsilon
        self.episodes = 0

    @property
    def epsilon(self) -> float:
        return max(self.min_epsilon, self.initial_epsilon * self.decay**self.episodes)

    def greedy(self, q_values: np.ndarray) -> np.ndarray:
        ties = greedy_mask(q_values)
        return np.argmax(self.rng.random(q_values.shape) * ties, axis=1)

    def sample(self, q_values: np.ndarray) -> np.ndarray:
        actions = self.greedy(q_values)
        eps = self.epsilon
        if eps > 0.0:
            explore = self.rng.random(len(actions)) < eps
            actions[explore] = self.rng.integers(0, self.num_outputs, int(explore.sum()))
        return actions

    def probabilities(self, q_values: np.ndarray) -> np.ndarray:
        """``pi(a|s)`` of every action: ``[N, n]``."""
        ties = greedy_mask(q_values)
        eps = self.epsilon
        return eps / self.num_outputs + (1.0 - eps) * ties / ties.sum(axis=1, keepdims=True)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions + self.start if self.start else actions

    def end_episodes(self, count: int) -> None:
        self.episodes += count

    def stats(self) -> dict[str, float]:
        return {"policy/epsilon": self.epsilon}

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episodes = int(state["episodes"])


def Greedy(*, action_space: spaces.Space[Any], rng: np.random.Generator) -> EGreedy:
    """Always the best action by value: epsilon-greedy with epsilon = 0."""
    return EGreedy(action_space=action_space, rng=rng, epsilon=0.0)


class RandomPolicy:
    """Uniformly random actions from any Discrete, MultiDiscrete or bounded Box space.

    On a Discrete space it asks the model for one output per action, so a Q-learner can learn
    the greedy values off-policy while behaving uniformly at random.
    """

    needs_outputs = False
    evaluation = "random actions"  # its "greedy" evaluation is as random as its training

    def __init__(self, *, action_space: spaces.Space[Any], rng: np.random.Generator) -> None:
        if isinstance(action_space, spaces.Box) and not action_space.is_bounded():
            raise ConfigError(
                f"policy=random needs a bounded action space, but the env's is "
                f"{describe_space(action_space)}."
            )
        if not isinstance(action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.Box):
            raise ConfigError(f"policy=random cannot sample from {describe_space(action_space)}.")
        self.action_space = action_space
        self.rng = rng
        self.num_outputs = int(action_space.n) if isinstance(action_space, spaces.Discrete) else 0

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Uniform ``pi(a|s)`` over a Discrete space: ``[N, n]``."""
        if not isinstance(self.action_space, spaces.Discrete):
            raise ConfigError("policy=random has action probabilities only for Discrete actions.")
        return np.full((len(outputs), self.num_outputs), 1.0 / self.num_outputs)

    def sample(self, outputs: np.ndarray) -> np.ndarray:
        """``outputs: [N, 0]`` (the empty model's) -> ``N`` uniformly random actions."""
        num_envs = len(outputs)
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return self.rng.integers(space.start, space.start + space.n, num_envs)
        if isinstance(space, spaces.MultiDiscrete):
            return space.start + self.rng.integers(0, space.nvec, (num_envs, *space.nvec.shape))
        return self.rng.uniform(space.low, space.high, (num_envs, *space.shape)).astype(space.dtype)

    def greedy(self, outputs: np.ndarray) -> np.ndarray:
        return self.sample(outputs)

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions

    def end_episodes(self, count: int) -> None:
        del count

    def stats(self) -> dict[str, float]:
        return {}
