"""An agent is a model, a policy, a storage and a learner, composed; it holds no learning logic.

Per vector step: one model call gives the outputs for the new observations, the policy acts on
them, and the transition that led there becomes a :class:`~twrl_exp.protocols.Step` for the
storage, which decides when the learner learns. Training draws from the agent's training RNG;
evaluation and videos from a separate one, so how often a run is evaluated never changes what
it trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Model, Policy, Step, Update


class Agent:
    """Acts with ``policy(model(obs))`` and feeds every transition to ``update``."""

    def __init__(self, *, model: Model, policy: Policy, update: Update, seed: int = 0) -> None:
        if getattr(policy, "needs_outputs", True) and not getattr(model, "produces_outputs", True):
            raise ConfigError(
                f"policy={type(policy).__name__.lower()} acts on model outputs, but model=none "
                "has none; use model=mlp, tilecoding or table, or policy=random."
            )
        self.model, self.policy, self.update = model, policy, update
        # A model may compute both stages in one call (a compiled linear model does).
        self.encode = getattr(model, "features_and_outputs", self._features_and_outputs)
        self.rng = np.random.default_rng(seed)
        self.eval_rng = np.random.default_rng([seed, 1_000_003])
        self._prev: tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]] | None = None

    def _features_and_outputs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = self.model.features(obs)
        return features, self.model.outputs(features)

    def _decide(
        self, obs: np.ndarray, *, greedy: bool, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Mapping[str, np.ndarray]]:
        features, outputs = self.encode(obs)
        actions, extras = self.policy.act(outputs, rng, greedy=greedy)
        return features, outputs, actions, extras

    def start(self, obs: np.ndarray) -> np.ndarray:
        """First actions of a run (or after a resume): ``obs [N, ...]`` -> env actions."""
        features, _, actions, extras = self._decide(obs, greedy=False, rng=self.rng)
        self._prev = (features, actions, extras)
        return self.policy.env_actions(actions)

    def step(
        self,
        obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        episode_start: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, float] | None]:
        """Learn from the step that produced ``obs`` and choose the next actions.

        ``episode_start[n]`` marks the autoreset step of env ``n``: its ``obs`` begins a new
        episode and its reward and flags belong to no transition.
        """
        assert self._prev is not None, "start() first"
        features, outputs, actions, extras = self._decide(obs, greedy=False, rng=self.rng)
        prev_features, prev_actions, prev_extras = self._prev
        valid = ~episode_start
        self.policy.advance(int(np.count_nonzero(valid)))
        step = Step(
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
        self.update.storage.add(step)
        metrics = None
        for batch in self.update.storage.batches():
            learned = self.update.learner.learn(batch)
            metrics = learned if learned is not None else metrics
        self._prev = (features, actions, extras)
        return self.policy.env_actions(actions), metrics

    def act(self, obs: np.ndarray, *, greedy: bool = True) -> np.ndarray:
        """Actions without learning (evaluation, videos), drawn from the evaluation RNG."""
        return self.policy.env_actions(self._decide(obs, greedy=greedy, rng=self.eval_rng)[2])

    def end_episodes(self, count: int) -> None:
        self.policy.end_episodes(count)

    def stats(self) -> dict[str, float]:
        return {**self.update.learner.stats(), **self.policy.stats()}

    def learned_state(self) -> dict[str, Any]:
        """What learning changes (weights, optimisers, targets): checked for divergence."""
        return {
            "model": self.model.state_dict(),
            "policy": self.policy.state_dict() if hasattr(self.policy, "state_dict") else {},
            "update": self.update.learner.state_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, learner (optimisers, targets, schedules),
        storage (a replay buffer), and the RNG states (numpy and torch)."""
        return {
            **self.learned_state(),
            "storage": self.update.storage.state_dict(),
            "rng": self.rng.bit_generator.state,
            "eval_rng": self.eval_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], *, weights_only: bool = False) -> None:
        self.model.load_state_dict(state["model"])
        if hasattr(self.policy, "load_state_dict") and state["policy"]:
            self.policy.load_state_dict(state["policy"])
        if weights_only:
            return
        self.update.learner.load_state_dict(state["update"])
        if state.get("storage"):
            self.update.storage.load_state_dict(state["storage"])
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
            self.eval_rng.bit_generator.state = state["eval_rng"]
            torch.set_rng_state(state["torch_rng"])
