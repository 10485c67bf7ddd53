"""The interfaces an agent is composed of, and the capabilities a learning rule may require.

An agent is a **model** (function approximator), a **policy** (action selection from the model's
outputs), a **storage** (what is kept between steps, and when learning is due) and a **learner**
(the loss, its optimisers and target networks). Implementations need not inherit from these;
the capability protocols are checked with ``isinstance`` when a composition is built, so a
learning rule accepts or refuses a model or policy by what it can do, in one sentence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from twrl_exp.errors import ConfigError


@dataclass
class Step:
    """One vector step of ``N`` envs, as learning sees it (arrays ``[N, ...]``).

    ``features``/``actions``/``extras`` are the decision taken in the previous observation;
    ``reward``, ``terminated``, ``truncated`` what followed; ``next_features`` the observation that
    followed (the true final observation where an episode ended: Gymnasium's next-step
    autoreset returns it), and ``next_outputs``/``next_actions`` the decision taken in it.
    ``valid`` is False for the autoreset step after an episode end, which belongs to no
    transition.
    """

    features: np.ndarray
    actions: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    next_features: np.ndarray
    next_outputs: np.ndarray
    next_actions: np.ndarray
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)


class Model(Protocol):
    """Maps observations to outputs in two stages, so learning can reuse the features."""

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

    def act(
        self, outputs: np.ndarray, rng: np.random.Generator, *, greedy: bool = False
    ) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """Actions ``[N, ...]`` and what learning needs of them (``log_prob``, ``pre_squash``)."""
        ...

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the env receives (offset Discrete starts, clipped or scaled Box actions)."""
        ...

    def end_episodes(self, count: int) -> None: ...

    def advance(self, env_steps: int) -> None:
        """``env_steps`` more env steps were taken (per-step schedules)."""
        ...

    def stats(self) -> dict[str, float]: ...


class Storage(Protocol):
    """What is kept between steps, and when learning is due."""

    def add(self, step: Step) -> None: ...

    def batches(self) -> Iterator[dict[str, Any]]:
        """The batches due now (none, one, or ``gradient_steps`` of them)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Learner(Protocol):
    """A learning rule: its loss, optimisers and target networks."""

    def learn(self, batch: dict[str, Any]) -> dict[str, float] | None: ...

    def stats(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Update:
    """What an ``update=`` option builds: a storage and the learner it feeds."""

    storage: Storage
    learner: Learner


# ---------------------------------------------------------------------------- capabilities


@runtime_checkable
class Differentiable(Protocol):
    """A torch model: ``model(features)`` with gradients, and its parameters."""

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LinearValues(Protocol):
    """Linear action values over binary features: ``Q(s, a) = sum weights[features(s), a]``."""

    weights: np.ndarray
    num_active: int


@runtime_checkable
class LogProbPolicy(Protocol):
    """A stochastic policy whose log-probabilities and entropy are differentiable."""

    def log_prob(self, outputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...

    def entropy(self, outputs: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ActionValuePolicy(Protocol):
    """Acts on action values; ``probabilities`` gives ``pi(a|s)`` for expected targets."""

    def probabilities(self, q_values: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class ReparameterizedPolicy(Protocol):
    """Draws differentiable actions in ``[-1, 1]`` with their log-probabilities (SAC)."""

    def rsample(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class DeterministicPolicy(Protocol):
    """A differentiable deterministic action in ``[-1, 1]`` (TD3, DDPG)."""

    def action(self, outputs: torch.Tensor) -> torch.Tensor: ...


def require(part: Any, capability: type, sentence: str) -> None:
    """Refuse a composition whose ``part`` lacks ``capability``, in one sentence."""
    if not isinstance(part, capability):
        raise ConfigError(sentence)
