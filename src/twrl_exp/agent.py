"""An agent is a model, a policy and an update, composed; it holds no logic of its own."""

from __future__ import annotations

from typing import Any

import numpy as np

from twrl_exp.errors import ConfigError
from twrl_exp.protocols import Model, Policy, Update


class Agent:
    """Acts with ``policy(model(obs))`` and hands every transition to ``update``.

    One model call per vector step: the outputs for the new observations serve both the next
    action and the update (Sarsa's ``Q(s', a')``, Q-learning's ``max_a Q(s', a)``).
    """

    def __init__(self, *, model: Model, policy: Policy, update: Update) -> None:
        if getattr(policy, "needs_outputs", True) and not getattr(model, "produces_outputs", True):
            raise ConfigError(
                f"policy={type(policy).__name__.lower()} acts on model outputs, but model=none "
                "has none; use model=mlp, tilecoding or table, or policy=random."
            )
        self.model, self.policy, self.update = model, policy, update

    def _decide(self, obs: np.ndarray, greedy: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = self.model.features(obs)
        outputs = self.model.outputs(features)
        actions = self.policy.greedy(outputs) if greedy else self.policy.sample(outputs)
        return features, outputs, actions

    def start(self, obs: np.ndarray) -> np.ndarray:
        """First actions of a run (or after a resume): ``obs [N, ...]`` -> env actions."""
        features, _, actions = self._decide(obs, greedy=False)
        self.update.start(features, actions)
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
        features, outputs, actions = self._decide(obs, greedy=False)
        metrics = self.update.observe(
            features=features,
            outputs=outputs,
            actions=actions,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            episode_start=episode_start,
        )
        return self.policy.env_actions(actions), metrics

    def act(self, obs: np.ndarray, *, greedy: bool = True) -> np.ndarray:
        """Actions without learning (evaluation)."""
        return self.policy.env_actions(self._decide(obs, greedy)[2])

    def end_episodes(self, count: int) -> None:
        self.policy.end_episodes(count)

    def stats(self) -> dict[str, float]:
        return {**self.update.stats(), **self.policy.stats()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "policy": self.policy.state_dict() if hasattr(self.policy, "state_dict") else {},
            "update": self.update.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], *, weights_only: bool = False) -> None:
        self.model.load_state_dict(state["model"])
        if hasattr(self.policy, "load_state_dict") and state["policy"]:
            self.policy.load_state_dict(state["policy"])
        if not weights_only:
            self.update.load_state_dict(state["update"])
