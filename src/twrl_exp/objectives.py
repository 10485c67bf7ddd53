"""What a sweep optimises: one number from a run's history, available at any point of the run
(so the same function gives a pruner its intermediate values and the study its final one)."""

from __future__ import annotations

import math

import numpy as np

from twrl_exp.choices import Aggregate, parse
from twrl_exp.errors import ConfigError
from twrl_exp.runner import History
from twrl_exp.stats import bootstrap_ci, iqm

OBJECTIVES = ("best_mean_return", "final_eval_return", "auc", "neg_steps_to_solve")


def objective_value(name: str, history: History, *, window: int, budget_steps: int | None) -> float:
    """The objective ``name`` of ``history`` so far.

    - ``best_mean_return``: best trailing-``window`` mean episode return.
    - ``final_eval_return``: the latest greedy evaluation's mean return.
    - ``auc``: area under the trailing-mean learning curve per env step, i.e. the trailing mean
      averaged over env steps (rewards learning fast, not only learning well).
    - ``neg_steps_to_solve``: minus the env steps needed to solve; an unsolved run scores minus
      its budget (or minus its steps so far while it is still running).
    """
    if name == "best_mean_return":
        return history.summary(window)["best_mean_return"]
    if name == "final_eval_return":
        return history.eval_means[-1] if history.eval_means else math.nan
    if name == "auc":
        return _area_under_curve(history)
    if name == "neg_steps_to_solve":
        if history.solved_step is not None:
            return -float(history.solved_step)
        return -float(max(budget_steps or 0, history.env_steps))
    raise ConfigError(f"objective={name} is unknown: use one of {', '.join(OBJECTIVES)}.")


def _area_under_curve(history: History) -> float:
    if not history.trailing or history.env_steps == 0:
        return math.nan
    ends = np.asarray(history.end_steps, dtype=np.float64)
    widths = np.diff(np.append(ends, history.env_steps))
    return float(np.dot(widths, history.trailing) / max(history.env_steps - ends[0], 1.0))


def aggregate(name: Aggregate | str, values: list[float]) -> float:
    """A trial's value from its seeds' objectives (``trial.aggregate``): ``mean``, ``iqm``
    (the mean of the middle half; of 3 seeds or fewer, their mean) or ``ci_low`` (the lower end
    of the 95% percentile-bootstrap interval of their IQM, 2,000 resamples, seeded: the same
    values give the same number). A nan among the values (a seed with no episode yet) gives
    nan; one seed's value is itself."""
    how = parse(Aggregate, "trial.aggregate", name)
    if not values:
        return math.nan
    if any(math.isnan(v) for v in values):
        return math.nan
    if how is Aggregate.mean or len(values) == 1:
        return float(np.mean(values))
    if how is Aggregate.iqm:
        return iqm(values)
    return bootstrap_ci(values, iqm, confidence=0.95, seed=0)[0]
