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

``backend="numba"`` (the default ``auto`` when numba is installed) runs the same step compiled,
with identical results: :mod:`twrl_exp.update.td_fast`.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

import numpy as np

from twrl_exp.choices import TdBackend, TdTarget, Traces, parse
from twrl_exp.errors import ConfigError
from twrl_exp.model.linear import LinearModel
from twrl_exp.policy.value import EGreedy, greedy_mask
from twrl_exp.protocols import (
    ActionValuePolicy,
    Clock,
    LinearValues,
    Metrics,
    Model,
    ModelFactory,
    Policy,
    State,
    Step,
    Update,
)
from twrl_exp.storage import OnlineStorage
from twrl_exp.update import td_fast
from twrl_exp.update.checks import check_range


class TdLambdaSettings(TypedDict):
    """``update=td_lambda``'s settings for :class:`TdLambda`."""

    target: TdTarget | str
    gamma: float
    lam: float
    alpha: float
    traces: Traces | str
    backend: TdBackend | str


def td_lambda(
    *,
    model: Model,
    policy: Policy,
    num_envs: int,
    make_model: ModelFactory | None = None,
    total_env_steps: int | None = None,
    seed: int = 0,
    **settings: Unpack[TdLambdaSettings],
) -> Update[Step]:
    """``update=td_lambda``: every step (:class:`OnlineStorage`) -> :class:`TdLambda`."""
    del make_model, total_env_steps, seed
    learner = TdLambda(model=model, policy=policy, num_envs=num_envs, **settings)
    return Update(storage=OnlineStorage(), learner=learner)


class TdLambda:
    """Sarsa(lambda), Watkins's Q(lambda) or Expected Sarsa(lambda) with per-env traces."""

    def __init__(
        self,
        *,
        model: Model,
        policy: Policy,
        num_envs: int,
        target: TdTarget | str,
        gamma: float,
        lam: float,
        alpha: float,
        traces: Traces | str,
        backend: TdBackend | str,
    ) -> None:
        if not isinstance(model, LinearValues):
            raise ConfigError(
                "update=td_lambda needs a linear model over binary features "
                f"(model=tilecoding or model=table), not {type(model).__name__}."
            )
        if not isinstance(policy, ActionValuePolicy):
            raise ConfigError(
                "update=td_lambda learns action values for discrete actions; use "
                f"policy=egreedy (or greedy, categorical, random), not {type(policy).__name__}."
            )
        if model.weights.shape[1] < 1:
            raise ConfigError("update=td_lambda needs a Discrete action space.")
        check_range("update.gamma", gamma, 0.0, 1.0)
        check_range("update.lam", lam, 0.0, 1.0)
        check_range("update.alpha", alpha, 0.0, None, low_open=True)
        self.target = parse(TdTarget, "update.target", target)
        self.replacing = parse(Traces, "update.traces", traces) is Traces.replacing
        self.kernels = td_fast.load_kernels(backend)
        self.backend = "numpy" if self.kernels is None else "numba"
        self.model, self.policy = model, policy
        self.gamma, self.lam = gamma, lam
        self.step_size = alpha / model.num_active
        self.totals = np.zeros(2)  # squared TD errors and their number, since stats()
        self.env_ids = np.arange(num_envs)
        for part in (model, policy):
            if isinstance(part, LinearModel | EGreedy):
                part.use_kernels(self.kernels)
        self._allocate_traces(num_envs)

    def _allocate_traces(self, num_envs: int) -> None:
        """Dense traces ``[N, F, A]`` for numpy; sparse ones for the compiled backend."""
        shape = self.model.weights.shape
        if self.kernels is None:
            self.traces = np.zeros((num_envs, *shape), dtype=np.float64)
            self.flat_traces = self.traces.reshape(num_envs, -1)  # a view
            return
        self.sparse = td_fast.SparseTraces(num_envs, shape[0] * shape[1])
        code = td_fast.TARGETS[self.target]
        self.params = np.array([self.gamma, self.lam, self.step_size, code, self.replacing])

    def _next_value(self, q_next: np.ndarray, actions: np.ndarray, clock: Clock) -> np.ndarray:
        if self.target is TdTarget.sarsa:
            return q_next[self.env_ids, actions]
        if self.target is TdTarget.q_learning:
            return np.maximum.reduce(q_next, axis=1)
        return np.add.reduce(self.policy.probabilities(q_next, clock) * q_next, axis=1)

    def learn(self, step: Step, clock: Clock) -> None:
        """Learn from ``(s, a, r, s', a')`` in every env that has a real transition: one
        semi-gradient step for all envs."""
        if self.kernels is not None:
            self._learn_compiled(step, clock)
        else:
            self._learn_numpy(step, clock)
        clock.gradient_steps += 1

    def _learn_numpy(self, step: Step, clock: Clock) -> None:
        actions = np.asarray(step.next_actions, np.int64)
        features, prev_actions = step.features, np.asarray(step.actions, np.int64)
        outputs, learn = step.next_outputs, step.valid
        weights = self.model.weights
        learned = np.count_nonzero(learn)
        q_prev = np.add.reduce(weights[features, prev_actions[:, None]], axis=1)
        future = np.where(step.terminated, 0.0, self._next_value(outputs, actions, clock))
        delta = step.reward + self.gamma * future - q_prev
        marked = (self.env_ids[:, None], features, prev_actions[:, None])
        if learned < len(delta):  # an autoreset step belongs to no transition
            delta = np.where(learn, delta, 0.0)
            marked = (marked[0][learn], features[learn], marked[2][learn])
        if self.replacing:
            self.traces[marked] = 1.0
        else:
            np.add.at(self.traces, marked, 1.0)
        weights += self.step_size * self._summed_update(delta).reshape(weights.shape)
        self.traces *= self.gamma * self.lam
        cut = step.terminated | step.truncated
        if self.target is TdTarget.q_learning:
            cut = cut | ~greedy_mask(outputs)[self.env_ids, actions]
        self.traces[cut] = 0.0
        self.totals += (np.add.reduce(delta * delta), learned)  # delta is 0 where not learned

    def _summed_update(self, delta: np.ndarray) -> np.ndarray:
        """``sum_n delta_n z_n``, divided by ``max(1, sum_n min(z_n, 1))`` with several envs."""
        flat = self.flat_traces
        if len(delta) == 1:
            return delta[0] * flat[0]
        # Only the non-zero traces (the others add delta * 0), each entry's terms added in env
        # order by bincount, as the compiled backend adds them. Envs whose traces share a weight
        # move it by their mean error, not their sum: 64 cars starting on the same tiles must
        # not take a 64-fold step.
        nonzero = np.flatnonzero(flat != 0.0)  # env-major, in env order for each entry
        size = flat.shape[1]
        envs, entries = np.divmod(nonzero, size)
        z = flat.ravel()[nonzero]
        shared = np.maximum(np.bincount(entries, np.minimum(z, 1.0), size), 1.0)
        return np.bincount(entries, delta[envs] * z, size) / shared

    def _learn_compiled(self, step: Step, clock: Clock) -> None:
        outputs, sparse, kernels = step.next_outputs, self.sparse, self.kernels
        assert kernels is not None
        kernels.learn_step(
            self.model.weights,
            sparse.entry,
            sparse.value,
            sparse.slot,
            sparse.length,
            sparse.sums,
            sparse.touched,
            self.totals,
            step.features,
            step.actions,
            step.reward,
            step.terminated,
            step.truncated,
            step.valid,
            outputs,
            step.next_actions,
            self.policy.probabilities(outputs, clock)
            if self.target is TdTarget.expected_sarsa
            else outputs,
            self.params,
        )

    def stats(self) -> Metrics:
        """Mean squared TD error since the last call."""
        squares, count = self.totals
        if count == 0:
            return {}
        self.totals[...] = 0.0
        return {"td_error_rms": float(np.sqrt(squares / count))}

    def state_dict(self) -> State:
        # Traces belong to episodes in flight; a resumed run restarts its episodes.
        return {}

    def load_state_dict(self, state: State) -> None:
        del state
        if self.kernels is not None:
            self.sparse.clear()
        else:
            self.traces[...] = 0.0
