"""Online TD(lambda) control for linear action values over binary features.

Sutton & Barto (2018), ch. 12: Sarsa(lambda) (sec. 12.7, Fig. 12.10 for binary features),
Watkins's Q(lambda) (sec. 12.10: traces cut after an exploratory action) and Expected
Sarsa(lambda) (sec. 12.9). Every env of the vector env has its own trace; all share the weights:

    delta_n = r_n + gamma * target(s'_n) - Q(s_n, a_n)     (target 0 after termination)
    z_n[F(s_n), a_n] <- 1 (replacing) or += 1 (accumulating)
    w <- w + (alpha / num_active) * sum_n delta_n z_n
    z_n <- gamma * lambda * z_n     (zeroed when the episode ends)

``alpha`` is the step size for the whole function; each active feature receives
``alpha / num_active`` (``alpha / num_tilings`` for tile coding, S&B sec. 9.5.4). With several
envs, a weight that several traces include moves by the trace-weighted mean of their errors
(divided by ``max(1, sum_n min(z_n, 1))``): exact single-env TD(lambda) while the envs touch
different weights, and never a multiplied step size when they share them.
Truncated episodes bootstrap from the final observation; terminated ones do not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twrl_exp.errors import ConfigError
from twrl_exp.policy.value import greedy_mask
from twrl_exp.protocols import ActionValuePolicy, LinearValues, Step, Update, require
from twrl_exp.storage import OnlineStorage
from twrl_exp.update.checks import check_range


def td_lambda(*, model: Any, policy: Any, num_envs: int, **settings: Any) -> Update:
    """``update=td_lambda``: every step (:class:`OnlineStorage`) -> :class:`TdLambda`."""
    for unused in ("make_model", "seed", "total_env_steps"):
        settings.pop(unused, None)
    learner = TdLambda(model=model, policy=policy, num_envs=num_envs, **settings)
    return Update(storage=OnlineStorage(), learner=learner)


class TdLambda:
    """Sarsa(lambda), Watkins's Q(lambda) or Expected Sarsa(lambda) with per-env traces."""

    def __init__(
        self,
        *,
        model: Any,
        policy: Any,
        num_envs: int,
        target: str = "sarsa",
        gamma: float = 1.0,
        lam: float = 0.9,
        alpha: float = 0.5,
        traces: str = "replacing",
    ) -> None:
        require(
            model,
            LinearValues,
            "update=td_lambda needs a linear model over binary features "
            f"(model=tilecoding or model=table), not {type(model).__name__}.",
        )
        require(
            policy,
            ActionValuePolicy,
            "update=td_lambda learns action values for discrete actions; use "
            f"policy=egreedy (or greedy, categorical, random), not {type(policy).__name__}.",
        )
        if model.weights.shape[1] < 1:
            raise ConfigError("update=td_lambda needs a Discrete action space.")
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.lam", lam, 0.0, 1.0)
        check_range("update.alpha", alpha, 0.0, None, low_open=True)
        self.target = str(getattr(target, "value", target))
        self.replacing = str(getattr(traces, "value", traces)) == "replacing"
        self.model, self.policy = model, policy
        self.gamma, self.lam = gamma, lam
        self.step_size = alpha / model.num_active
        self.traces = np.zeros((num_envs, *model.weights.shape), dtype=np.float64)
        self.rows = np.arange(num_envs)[:, None]
        self.td_error_sq = 0.0
        self.td_count = 0

    def _next_value(self, q_next: np.ndarray, actions: np.ndarray) -> np.ndarray:
        if self.target == "sarsa":
            return q_next[np.arange(len(actions)), actions]
        if self.target == "q_learning":
            return q_next.max(axis=1)
        return (self.policy.probabilities(q_next) * q_next).sum(axis=1)

    def learn(self, step: Step) -> None:
        """Learn from ``(s, a, r, s', a')`` in every env that has a real transition."""
        actions = np.asarray(step.next_actions, np.int64)
        prev_features = step.features
        prev_actions = np.asarray(step.actions, np.int64)
        terminated, truncated, outputs = step.terminated, step.truncated, step.next_outputs
        learn = step.valid
        weights = self.model.weights
        q_prev = weights[prev_features, prev_actions[:, None]].sum(axis=1)
        future = np.where(terminated, 0.0, self._next_value(outputs, actions))
        delta = np.where(learn, step.reward + self.gamma * future - q_prev, 0.0)
        rows = self.rows[learn]
        marked = (rows, prev_features[learn], prev_actions[learn][:, None])
        if self.replacing:
            self.traces[marked] = 1.0
        else:
            np.add.at(self.traces, marked, 1.0)
        update = (delta @ self.traces.reshape(len(delta), -1)).reshape(self.traces.shape[1:])
        if len(self.traces) > 1:
            # Envs whose traces share a weight move it by their mean error, not their sum:
            # 64 cars starting on the same tiles must not take a 64-fold step.
            update /= np.maximum(np.minimum(self.traces, 1.0).sum(axis=0), 1.0)
        weights += self.step_size * update
        self.traces *= self.gamma * self.lam
        cut = terminated | truncated
        if self.target == "q_learning":
            cut = cut | ~greedy_mask(outputs)[np.arange(len(actions)), actions]
        self.traces[cut] = 0.0
        self.td_error_sq += float(delta @ delta)  # delta is 0 where nothing was learned
        self.td_count += int(np.count_nonzero(learn))
        return None

    def stats(self) -> dict[str, float]:
        """Mean squared TD error since the last call."""
        if self.td_count == 0:
            return {}
        out = {"td_error_rms": float(np.sqrt(self.td_error_sq / self.td_count))}
        self.td_error_sq, self.td_count = 0.0, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        # Traces belong to episodes in flight; a resumed run restarts its episodes.
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
        self.traces[...] = 0.0
