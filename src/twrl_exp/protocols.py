"""The interfaces an agent is composed of, the records learning exchanges, and its clock.

An agent is a **model** (function approximator), a **policy** (action selection from the model's
outputs), a **storage** (what is kept between steps, and when learning is due) and a **learner**
(the loss, its optimisers and target networks). Implementations need not inherit from these.

The storage and the learner of an :class:`Update` agree on one batch record: a storage of type
``Storage[B]`` hands out ``B`` s and the learner is a ``Learner[B]`` (:class:`Step` for online
rules; :class:`~twrl_exp.storage.EpisodeBatch`, :class:`~twrl_exp.storage.RolloutBatch`,
:class:`~twrl_exp.storage.ReplayBatch` for the others). What a learning rule reads of a model
or policy beyond the basic protocols is a *capability* (:class:`NetworkModel`,
:class:`LinearValues`, :class:`LogProbPolicy`, ...), checked with ``isinstance`` when the rule
is built, so a rule accepts or refuses a model or policy by what it can do, in one sentence.

Time is one :class:`Clock`, owned and advanced by the agent, passed to whatever depends on it
(learners, policies, schedules).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, NamedTuple, Protocol, TypeAlias, TypeVar, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces

State: TypeAlias = dict[str, object]
"""What ``state_dict()`` returns: plain values, arrays, tensors and nested states."""

Metrics: TypeAlias = dict[str, float]

T = TypeVar("T")


def entry(state: Mapping[str, object], key: str, kind: type[T]) -> T:
    """``state[key]``, which must be a ``kind`` (a checkpoint is data read from a file)."""
    value = state[key]
    if not isinstance(value, kind):
        raise TypeError(f"state[{key!r}] is a {type(value).__name__}, not a {kind.__name__}.")
    return value


def integer(state: Mapping[str, object], key: str) -> int:
    """``state[key]`` as an ``int`` (a Python or NumPy integer in the checkpoint)."""
    value = state[key]
    if not isinstance(value, int | np.integer):
        raise TypeError(f"state[{key!r}] is a {type(value).__name__}, not an integer.")
    return int(value)


@dataclass
class Clock:
    """What has happened in a run (or in one population member) so far, counted once.

    The agent advances it; learners, policies and schedules read it (a learner also counts its
    own gradient steps on it). A checkpoint saves it with the agent.

    Attributes:
        env_steps: transitions the envs took. The autoreset step after an episode end is none:
            its observation starts a new episode and its reward and flags mean nothing.
        episodes: episodes that ended (terminated or truncated).
        updates: learner calls, one per batch a storage handed over.
        gradient_steps: optimiser steps of the learner's loss (PPO: one per minibatch; DQN,
            SAC, TD3: one per sampled batch, ``update.gradient_steps`` per call; REINFORCE, A2C:
            one per call; TD(lambda): one semi-gradient step per call).
    """

    env_steps: int = 0
    episodes: int = 0
    updates: int = 0
    gradient_steps: int = 0

    def progress(self, total_env_steps: int | None) -> float:
        """The fraction of ``total_env_steps`` taken, capped at 1 (0 without a budget).

        >>> Clock(env_steps=250).progress(1000)
        0.25
        """
        return min(1.0, self.env_steps / total_env_steps) if total_env_steps else 0.0

    def state_dict(self) -> dict[str, int]:
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "updates": self.updates,
            "gradient_steps": self.gradient_steps,
        }

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        for name in ("env_steps", "episodes", "updates", "gradient_steps"):
            setattr(self, name, integer(state, name) if name in state else 0)


_NO_EXTRAS: Mapping[str, np.ndarray] = MappingProxyType({})


class Step(NamedTuple):
    """One vector step of ``N`` envs, as learning sees it; every array is ``[N, ...]``.

    The agent makes one per vector step, for every rule (online rules learn from it as it is):
    an immutable record, a named tuple because that is the cheapest to make (a frozen dataclass
    costs a microsecond more, 1-2% of a fast vector step).

    Attributes:
        features: the model's encoding of the observation ``s`` the decision was taken in.
        actions: the decision ``a`` (as the policy made it, before ``env_actions``).
        reward: ``r`` that followed.
        terminated: the episode ended in a terminal state (no bootstrap from ``s'``).
        truncated: the episode was cut (time limit): ``s'`` still bootstraps.
        valid: False for the autoreset step after an episode end, which belongs to no
            transition (its ``s`` is a final observation, its reward and flags mean nothing).
        next_features: the encoding of ``s'``: the true final observation where an episode
            ended (Gymnasium's next-step autoreset returns it).
        next_outputs: the model's outputs at ``s'``, computed without gradients.
        next_actions: the decision taken at ``s'`` (Sarsa's ``a'``).
        extras: what the policy recorded of ``a`` (``log_prob``, ``pre_squash``).
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
    extras: Mapping[str, np.ndarray] = _NO_EXTRAS


# ---------------------------------------------------------------------------- parts


@runtime_checkable
class Model(Protocol):
    """Maps observations to outputs in two stages, so learning can reuse the features."""

    observation_space: spaces.Space
    num_outputs: int

    def features(self, obs: np.ndarray) -> np.ndarray:
        """``obs [N, ...]`` -> model-specific encoding (flat floats, active tile indices, ...)."""
        ...

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """``[N, num_outputs]`` logits, means or action values, computed without gradients."""
        ...

    def state_dict(self) -> Mapping[str, object]: ...

    def load_state_dict(self, state: Mapping[str, object]) -> object: ...


@runtime_checkable
class Policy(Protocol):
    """Chooses actions from model outputs; ``num_outputs`` tells the model how many to make.

    ``action_shape`` and ``action_dtype`` describe one env's action as the policy makes it
    (what storages keep), before :meth:`env_actions`.
    """

    num_outputs: int
    action_shape: tuple[int, ...]
    action_dtype: np.dtype

    def act(
        self, outputs: np.ndarray, rng: np.random.Generator, clock: Clock, *, greedy: bool = False
    ) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """Actions ``[N, ...]`` and what learning needs of them (``log_prob``, ``pre_squash``),
        at the time ``clock`` says (schedules)."""
        ...

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the env receives (offset Discrete starts, clipped or scaled Box actions)."""
        ...

    def stats(self, clock: Clock) -> Metrics: ...


BatchT = TypeVar("BatchT")
BatchT_co = TypeVar("BatchT_co", covariant=True)
BatchT_contra = TypeVar("BatchT_contra", contravariant=True)


class Storage(Protocol[BatchT_co]):
    """What is kept between steps, and when learning is due: hands out batches of one type."""

    def add(self, step: Step) -> None: ...

    def batches(self, clock: Clock) -> Iterator[BatchT_co]:
        """The batches due now, by the run's ``clock`` (usually none or one)."""
        ...

    def state_dict(self) -> State: ...

    def load_state_dict(self, state: State) -> None: ...


class Learner(Protocol[BatchT_contra]):
    """A learning rule: its loss, optimisers and target networks, learning from one batch type.

    ``learn`` adds the gradient steps it takes to ``clock.gradient_steps`` and reads the rest
    of the clock (schedules, target updates); it returns metrics, or None if it has none.
    """

    def learn(self, batch: BatchT_contra, clock: Clock) -> Metrics | None: ...

    def stats(self) -> Metrics: ...

    def state_dict(self) -> State: ...

    def load_state_dict(self, state: State) -> None: ...


@dataclass(frozen=True)
class Update(Generic[BatchT]):
    """What an ``update=`` option builds: a storage and the learner it feeds, and for how many
    env steps the agent explores with uniformly random actions first (off-policy rules on
    continuous actions: until ``learning_starts``, as SB3 and CleanRL do)."""

    storage: Storage[BatchT]
    learner: Learner[BatchT]
    random_steps: int = 0


@runtime_checkable
class FeedbackStorage(Protocol[BatchT_contra]):
    """A storage that wants to hear, after each learn, what its learner found out about each
    sample of the batch it handed over (prioritised replay: the TD errors, for priorities).

    The agent tells it :meth:`FeedbackLearner.feedback` right after ``learner.learn(batch)``;
    a storage that has this method needs a learner that has that one."""

    def feedback(self, batch: BatchT_contra, errors: np.ndarray) -> None: ...


@runtime_checkable
class FeedbackLearner(Protocol):
    """A learner that reports one figure per sample of the batch it last learnt from, shaped
    as the batch's samples (DQN: ``|delta|``, ``[G, B]``), for a :class:`FeedbackStorage`."""

    def feedback(self) -> np.ndarray: ...


# ---------------------------------------------------------------------------- capabilities


@runtime_checkable
class Differentiable(Protocol):
    """A torch network: ``net(x)`` with gradients, and its parameters."""

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def state_dict(self) -> Mapping[str, object]: ...

    def load_state_dict(self, state: Mapping[str, object]) -> object: ...


@runtime_checkable
class NetworkModel(Model, Differentiable, Protocol):
    """A differentiable model whose shape a learning rule can copy for its critics.

    ``in_features`` is the width of :meth:`features`; ``hidden_sizes`` and ``activation`` are
    the model's, ``critic_hidden_sizes`` those of the critics built beside it (None: the same).
    """

    in_features: int
    hidden_sizes: list[int]
    critic_hidden_sizes: list[int] | None
    activation: str


class ModelFactory(Protocol):
    """The model group's constructor (``model=mlp`` with its settings), for critics: what it
    builds reads observations of ``observation_space`` and makes ``num_outputs`` outputs."""

    def __call__(
        self,
        *,
        observation_space: spaces.Space,
        num_outputs: int,
        hidden_sizes: Sequence[int],
        output_gain: float,
    ) -> Model: ...


@runtime_checkable
class LinearValues(Protocol):
    """Linear action values over binary features: ``Q(s, a) = sum weights[features(s), a]``."""

    weights: np.ndarray
    num_active: int


@runtime_checkable
class LogProbPolicy(Policy, Protocol):
    """A stochastic policy whose log-probabilities and entropy are differentiable (and whose
    own parameters, a learned standard deviation, learn with the model's)."""

    def log_prob(self, outputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...

    def entropy(self, outputs: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


@runtime_checkable
class ActionValuePolicy(Policy, Protocol):
    """Acts on action values; ``probabilities`` gives ``pi(a|s)`` for expected targets."""

    def probabilities(self, q_values: np.ndarray, clock: Clock) -> np.ndarray: ...


@runtime_checkable
class ReparameterizedPolicy(Policy, Protocol):
    """Draws differentiable actions in ``[-1, 1]`` with their log-probabilities (SAC)."""

    def rsample(
        self, outputs: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class DeterministicPolicy(Policy, Protocol):
    """A differentiable deterministic action in ``[-1, 1]`` (TD3, DDPG)."""

    def action(self, outputs: torch.Tensor) -> torch.Tensor: ...
