"""A learning rule of your own: a one-step ("myopic") policy gradient.

``update=my_rule`` builds :class:`MyRule` with the run's model and policy (and its own knobs
from ``conf/update/my_rule.yaml``). An update is a storage (what is kept between steps: here
the latest step) and a learner (the loss and its optimiser).
"""

from __future__ import annotations

from typing import Any

import torch

from twrl_exp.protocols import Clock, Step, Update
from twrl_exp.storage import OnlineStorage


class MyopicGradient:
    """``-(r - b) log pi(a|s)`` on every step, with a running-average baseline ``b``."""

    def __init__(self, model: Any, policy: Any, lr: float) -> None:
        self.model, self.policy = model, policy
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        self.baseline = 0.0

    def learn(self, step: Step, clock: Clock) -> dict[str, float] | None:
        """One gradient step on ``step`` (``clock``: the run's env steps, episodes, ...)."""
        if not step.valid.any():
            return None
        obs = torch.as_tensor(step.features[step.valid], dtype=torch.float32)
        actions = torch.as_tensor(step.actions[step.valid])
        reward = torch.as_tensor(step.reward[step.valid], dtype=torch.float32)
        log_prob = self.policy.log_prob(self.model(obs), actions)
        loss = -((reward - self.baseline) * log_prob).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        clock.gradient_steps += 1
        self.baseline += 0.01 * (float(reward.mean()) - self.baseline)
        return {"loss": float(loss.detach()), "baseline": self.baseline}

    def stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = float(state["baseline"])


class MyRule(Update):
    def __init__(self, *, model: Any, policy: Any, lr: float = 0.01, **parts: Any) -> None:
        del parts  # also given: make_model, num_envs, total_env_steps, seed
        super().__init__(storage=OnlineStorage(), learner=MyopicGradient(model, policy, lr))
