"""An agent is a model, a policy, a storage and a learner, composed; it holds no learning logic.

Per vector step: the agent's :class:`~twrl_exp.protocols.Clock` counts the env steps and
episode ends that happened, one model call gives the outputs for the new observations, the
policy acts on them, and the transition that led there becomes a
:class:`~twrl_exp.protocols.Step` for the storage, which decides when the learner learns (and,
if it asks, hears back what the learner found out about each sample: prioritised replay).
Training draws from the agent's training RNG; evaluation and videos from a separate one
(streams ``POLICY`` and ``EVALUATION`` of the run's seed, :mod:`twrl_exp.seeding`), so how often
a run is evaluated never changes what it trains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from twrl_exp import seeding
from twrl_exp.errors import ConfigError
from twrl_exp.normalize import Normalizer
from twrl_exp.protocols import (
    Clock,
    FeedbackLearner,
    FeedbackStorage,
    Metrics,
    Model,
    Policy,
    Step,
    Update,
)

BatchT = TypeVar("BatchT")


def _feedback(update: Update[BatchT]) -> Callable[[BatchT], None] | None:
    """What tells the storage, after each learn, what the learner found out about each sample
    (:class:`~twrl_exp.protocols.FeedbackStorage`), or None where the storage asks nothing."""
    storage, learner = update.storage, update.learner
    if not isinstance(storage, FeedbackStorage):
        return None
    if not isinstance(learner, FeedbackLearner):
        raise ConfigError(
            f"{type(storage).__name__} learns from what its learner finds out about each sample, "
            f"and {type(learner).__name__} tells nothing: pair it with a learner that does."
        )
    return lambda batch: storage.feedback(batch, learner.feedback())


class Agent(Generic[BatchT]):
    """Acts with ``policy(model(obs))`` and feeds every transition to ``update``."""

    def __init__(
        self,
        *,
        model: Model,
        policy: Policy,
        update: Update[BatchT],
        seed: int = 0,
        normalizer: Normalizer | None = None,
    ) -> None:
        if getattr(policy, "needs_outputs", True) and not getattr(model, "produces_outputs", True):
            raise ConfigError(
                f"policy={type(policy).__name__.lower()} acts on model outputs, but model=none "
                "has none; use model=mlp, tilecoding or table, or policy=random."
            )
        self.model, self.policy, self.update = model, policy, update
        # Observation and reward normalisation (env.normalize_*): trained with the agent,
        # frozen when it only acts.
        self.normalizer = normalizer
        self.feedback: Callable[[BatchT], None] | None = _feedback(update)
        self.clock = Clock()
        # A model may compute both stages in one call (a compiled linear model does).
        self.encode = getattr(model, "features_and_outputs", self._features_and_outputs)
        self.rng = seeding.generator(seed, seeding.Stream.POLICY)
        self.eval_rng = seeding.generator(seed, seeding.Stream.EVALUATION)
        bind = getattr(policy, "bind_exploration", None)
        if bind is not None:  # gSDE keeps its noise matrices for the training stream's draws
            bind(self.rng)
        # torch's draws (minibatch order, sampling): its global RNG, or a population member's
        # own generator, which continues the global RNG its single run would have drawn from.
        self.torch_rng: torch.Generator | None = None
        self._prev: tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]] | None = None
        self._obs: np.ndarray | None = None  # the last observations decided on
        # On-policy rules: the first decision of each rollout is made after the update, by the
        # policy just learned (the storage says so; ``decide_again``).
        self.acts_after_learning = bool(getattr(update.storage, "acts_after_learning", False))
        # Env steps of uniformly random actions before the policy's own (Update.random_steps).
        self.random_steps = int(getattr(update, "random_steps", 0))
        if self.random_steps and not hasattr(policy, "random_actions"):
            raise ConfigError(
                f"policy={type(policy).__name__.lower()} has no random_actions(n, rng) to explore "
                "with before learning starts; set update.random_start=false (or give it one)."
            )

    def _features_and_outputs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = self.model.features(obs)
        return features, self.model.outputs(features)

    def _decide(
        self, obs: np.ndarray, *, greedy: bool, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Mapping[str, np.ndarray]]:
        if self.normalizer is not None:
            obs = self.normalizer.obs(obs)
        features, outputs = self.encode(obs)
        if not greedy and self.clock.env_steps < self.random_steps:
            actions, extras = self.policy.random_actions(len(obs), rng)  # type: ignore[attr-defined]
        else:
            actions, extras = self.policy.act(outputs, rng, self.clock, greedy=greedy)
        return features, outputs, actions, extras

    def start(self, obs: np.ndarray) -> np.ndarray:
        """First actions of a run (or after a resume): ``obs [N, ...]`` -> env actions."""
        if self.normalizer is not None:
            self.normalizer.observe(obs)
        features, _, actions, extras = self._decide(obs, greedy=False, rng=self.rng)
        self._prev, self._obs = (features, actions, extras), obs
        return self.policy.env_actions(actions)

    def step(
        self,
        obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        episode_start: np.ndarray,
    ) -> tuple[np.ndarray, Metrics | None]:
        """Learn from the step that produced ``obs`` and choose the next actions.

        ``episode_start[n]`` marks the autoreset step of env ``n``: its ``obs`` begins a new
        episode and its reward and flags belong to no transition, so no clock counts it.
        Returns the env actions and the metrics of the last learner call that had any.
        """
        assert self._prev is not None, "start() first"
        clock = self.clock
        valid = ~episode_start
        clock.env_steps += int(np.count_nonzero(valid))
        # An autoreset step ends no episode (its flags are False), as the runner counts them.
        clock.episodes += int(np.count_nonzero(terminated | truncated))
        if self.normalizer is not None:
            self.normalizer.observe(obs)
            reward = self.normalizer.reward(reward, terminated | truncated, valid)
        features, outputs, actions, extras = self._decide(obs, greedy=False, rng=self.rng)
        prev_features, prev_actions, prev_extras = self._prev
        self.update.storage.add(
            Step(
                features=prev_features,
                actions=prev_actions,
                extras=prev_extras,
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                valid=valid,
                next_features=features,
                next_outputs=outputs,
                next_actions=actions,
            )
        )
        metrics = None
        updates = clock.updates
        for batch in self.update.storage.batches(clock):
            clock.updates += 1
            learned = self.update.learner.learn(batch, clock)
            metrics = learned if learned is not None else metrics
            if self.feedback is not None:
                self.feedback(batch)
        self._prev, self._obs = (features, actions, extras), obs
        if (
            self.acts_after_learning
            and clock.updates != updates
            and not getattr(self.update.learner, "defers", False)  # a population learns later
        ):
            return self.decide_again(), metrics
        return self.policy.env_actions(actions), metrics

    def decide_again(self) -> np.ndarray:
        """The next env actions decided again, by the policy as it is now: after an update of
        an on-policy rule (``acts_after_learning``), the first decision of the next rollout is
        the updated policy's, its action and log-probability alike (a population calls this
        for its members once it has learned). The first decision's draws are spent."""
        assert self._obs is not None, "start() first"
        features, _, actions, extras = self._decide(self._obs, greedy=False, rng=self.rng)
        self._prev = (features, actions, extras)
        return self.policy.env_actions(actions)

    def act(self, obs: np.ndarray, *, greedy: bool = True) -> np.ndarray:
        """Actions without learning (evaluation, videos), drawn from the evaluation RNG."""
        return self.policy.env_actions(self._decide(obs, greedy=greedy, rng=self.eval_rng)[2])

    def stats(self) -> Metrics:
        return {**self.update.learner.stats(), **self.policy.stats(self.clock)}

    def learned_state(self) -> dict[str, Any]:
        """What learning changes (weights, optimisers, targets): checked for divergence."""
        policy_state = getattr(self.policy, "state_dict", None)
        learned = {
            "model": self.model.state_dict(),
            "policy": policy_state() if policy_state is not None else {},
            "update": self.update.learner.state_dict(),
        }
        if self.normalizer is not None:
            learned["normalizer"] = self.normalizer.state_dict()
        return learned

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, learner (optimisers, targets), storage (a
        replay buffer), the clock (schedules) and the RNG states (numpy and torch)."""
        return {
            **self.learned_state(),
            "storage": self.update.storage.state_dict(),
            "clock": self.clock.state_dict(),
            "rng": self.rng.bit_generator.state,
            "eval_rng": self.eval_rng.bit_generator.state,
            "torch_rng": (
                torch.get_rng_state() if self.torch_rng is None else self.torch_rng.get_state()
            ),
        }

    def load_state_dict(self, state: Mapping[str, Any], *, weights_only: bool = False) -> None:
        """Restore ``state``; with ``weights_only``, what acting needs (weights, the clock for
        schedules), not the learner, storage or RNGs."""
        self.model.load_state_dict(state["model"])
        load_policy = getattr(self.policy, "load_state_dict", None)
        if load_policy is not None and state["policy"]:
            load_policy(state["policy"])
        if "clock" in state:
            self.clock.load_state_dict(state["clock"])
        else:  # saved before the clock, when an epsilon-greedy policy counted for itself
            self.clock.load_state_dict(state["policy"])
        if self.normalizer is not None:  # acting needs its statistics
            if "normalizer" not in state:
                raise ConfigError(
                    "this agent normalises observations or rewards (env.normalize_*), but its "
                    "saved state holds no statistics: it was saved without them."
                )
            self.normalizer.load_state_dict(state["normalizer"], statistics_only=weights_only)
        if weights_only:
            return
        self.update.learner.load_state_dict(state["update"])
        if state.get("storage"):
            self.update.storage.load_state_dict(state["storage"])
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
            self.eval_rng.bit_generator.state = state["eval_rng"]
            if self.torch_rng is None:
                torch.set_rng_state(state["torch_rng"])
            else:
                self.torch_rng.set_state(state["torch_rng"])
