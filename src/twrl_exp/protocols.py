"""The three interfaces an agent is composed of. Implementations need not inherit from these."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Model(Protocol):
    """Maps observations to outputs in two stages, so an update can reuse the features."""

    def features(self, obs: np.ndarray) -> np.ndarray:
        """``obs [N, ...]`` -> model-specific encoding (flat floats, active tile indices, ...)."""
        ...

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """``[N, num_outputs]`` logits, means or action values, computed without gradients."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class Policy(Protocol):
    """Chooses actions from model outputs; ``num_outputs`` tells the model how many to make."""

    num_outputs: int

    def sample(self, outputs: np.ndarray) -> np.ndarray: ...

    def greedy(self, outputs: np.ndarray) -> np.ndarray: ...

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the env receives (offset Discrete starts, clipped Box actions)."""
        ...

    def end_episodes(self, count: int) -> None: ...

    def stats(self) -> dict[str, float]: ...


class Update(Protocol):
    """A learning rule fed one vector step at a time."""

    def start(self, features: np.ndarray, actions: np.ndarray) -> None:
        """The first decisions of a run (or after a resume)."""
        ...

    def observe(
        self,
        *,
        features: np.ndarray,
        outputs: np.ndarray,
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        episode_start: np.ndarray,
    ) -> dict[str, float] | None:
        """The step that led to ``features`` and the next ``actions``; metrics if it learned.

        ``episode_start[n]`` marks env ``n``'s autoreset step, whose reward and flags belong to
        no transition.
        """
        ...

    def stats(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
