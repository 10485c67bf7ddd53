"""What a sweep optimises: one number from a run's history, available at any point of the run
(so the same function gives a pruner its intermediate values and the study its final one), or
several numbers at once (a multi-objective study), its Pareto front and the point of the front
a sweep saves as its experiment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from twrl_exp.choices import Aggregate, Objective, parse
from twrl_exp.errors import ConfigError
from twrl_exp.runner import History
from twrl_exp.stats import bootstrap_ci, iqm

OBJECTIVES = tuple(member.value for member in Objective)
# Each objective's own direction: a sweep's default (``hydra.sweeper.direction: null``).
DIRECTIONS = {name: "minimize" if name == "seconds_to_solve" else "maximize" for name in OBJECTIVES}
# The rule a multi-objective sweep picks its experiment's point of the Pareto front by, besides
# an objective's name (its best point) or a trial number.
KNEE = "knee"
# On every run of a trial on a multi-objective study's Pareto front: the study's name (the
# leaderboard marks those rows).
PARETO_TAG = "optuna.pareto"

Value = float | tuple[float, ...]  # one objective's value, or several objectives' values


def names(objective: Any, key: str = "trial.objective") -> tuple[str, ...]:
    """The objectives ``objective`` names: one name, or a list of names (several objectives:
    a multi-objective study); a :class:`ConfigError` naming ``key`` for anything else."""
    items = [objective] if isinstance(objective, str) else objective
    try:
        listed = [str(item) for item in items]
    except TypeError:
        listed = []
    shown = objective if isinstance(objective, str) else f"[{','.join(listed)}]"
    if not listed or any(item not in OBJECTIVES for item in listed):
        raise ConfigError(
            f"{key}={shown} is invalid: it must be one of {', '.join(OBJECTIVES)}, or a "
            "list of them (several objectives: a multi-objective Optuna study)."
        )
    if len(set(listed)) < len(listed):
        raise ConfigError(f"{key}={shown} is invalid: it names an objective twice.")
    return tuple(listed)


def directions(objective: Any, direction: Any, key: str = "hydra.sweeper.direction") -> list[str]:
    """One direction per objective of ``objective``: ``direction`` null (each objective's own,
    :data:`DIRECTIONS`), one of maximize/minimize (one objective), or a list of them, one per
    objective."""
    wanted = names(objective, key.replace("direction", "objective"))
    if direction is None:
        return [DIRECTIONS[name] for name in wanted]
    given = [direction] if isinstance(direction, str) else [str(d) for d in direction]
    valid = all(d in ("maximize", "minimize") for d in given)
    if not valid or len(given) != len(wanted):
        direction = direction if isinstance(direction, str) else f"[{','.join(given)}]"
        need = "maximize or minimize" if len(wanted) == 1 else f"a list of {len(wanted)} of them"
        raise ConfigError(
            f"{key}={direction} is invalid: it must be null (each objective's own direction) "
            f"or {need}, one per objective ({', '.join(wanted)})."
        )
    return given


def values(objective: Any, history: History, *, window: int, budget_steps: int | None) -> Value:
    """``objective``'s value(s) of ``history`` so far: a float for one objective, a tuple for a
    list of them."""
    wanted = names(objective)
    found = tuple(
        objective_value(name, history, window=window, budget_steps=budget_steps) for name in wanted
    )
    return found if not isinstance(objective, str) and len(wanted) > 1 else found[0]


def objective_value(name: str, history: History, *, window: int, budget_steps: int | None) -> float:
    """The objective ``name`` of ``history`` so far.

    - ``best_mean_return``: best trailing-``window`` mean episode return.
    - ``final_eval_return``: the latest greedy evaluation's mean return.
    - ``auc``: area under the trailing-mean learning curve per env step, i.e. the trailing mean
      averaged over env steps (rewards learning fast, not only learning well).
    - ``neg_steps_to_solve``: minus the env steps needed to solve; an unsolved run scores minus
      its budget (or minus its steps so far while it is still running).
    - ``seconds_to_solve`` (minimised): the training seconds (wall clock, evaluations not
      counted) needed to solve; an unsolved run scores its training seconds so far.
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
    if name == "seconds_to_solve":
        if history.solved_time is not None:
            return float(history.solved_time)
        return float(history.train_time)
    raise ConfigError(f"objective={name} is unknown: use one of {', '.join(OBJECTIVES)}.")


def _area_under_curve(history: History) -> float:
    if not history.trailing or history.env_steps == 0:
        return math.nan
    ends = np.asarray(history.end_steps, dtype=np.float64)
    widths = np.diff(np.append(ends, history.env_steps))
    return float(np.dot(widths, history.trailing) / max(history.env_steps - ends[0], 1.0))


def aggregate(name: Aggregate | str, values: Sequence[Value]) -> Value:
    """A trial's value(s) from its seeds' (``trial.aggregate``), objective by objective when
    each seed has several: see :func:`aggregate_one`."""
    if values and isinstance(values[0], tuple):
        columns = zip(*(v if isinstance(v, tuple) else (v,) for v in values), strict=True)
        return tuple(aggregate_one(name, list(column)) for column in columns)
    return aggregate_one(name, [float(v) for v in values if not isinstance(v, tuple)])


def aggregate_one(name: Aggregate | str, values: list[float]) -> float:
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


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """The indices of ``points`` no other point dominates (at least as good on every objective,
    better on one), in their order; points with a nan are never on it. Optuna computes its
    studies' fronts itself (``Study.best_trials``); this is for runs outside a study (a grid
    sweep's) and for :func:`pick`."""
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    good = [i for i, p in enumerate(points) if not any(math.isnan(v) for v in p)]
    scored = {i: np.asarray(points[i], dtype=np.float64) * signs for i in good}
    return [
        i
        for i in good
        if not any(
            np.all(scored[j] >= scored[i]) and np.any(scored[j] > scored[i]) for j in good if j != i
        )
    ]


def pick(
    points: Sequence[Sequence[float]],
    directions: Sequence[str],
    rule: str,
    objective_names: Sequence[str],
) -> int:
    """The index of the point of a Pareto front (``points``, all on it) that ``rule`` picks:

    - ``knee``: the point nearest (Euclidean) the ideal point, each objective scaled to [0, 1]
      over the front (its best value 0, its worst 1; an objective equal on every point counts
      0); ties go to the first point;
    - an objective's name: the point best on it, ties broken by the next objectives in order.
    """
    if not points:
        raise ValueError("an empty front has no point to pick")
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    scored = np.asarray(points, dtype=np.float64) * signs  # larger is better everywhere
    if rule == KNEE:
        best, worst = scored.max(axis=0), scored.min(axis=0)
        span = np.where(best > worst, best - worst, 1.0)
        distance = np.sqrt((((best - scored) / span) ** 2).sum(axis=1))
        return int(np.argmin(distance))
    if rule not in objective_names:
        raise ConfigError(
            f"hydra.sweeper.pick={rule} is invalid: it must be {KNEE}, one of the objectives "
            f"({', '.join(objective_names)}) or a trial number of the front."
        )
    first = list(objective_names).index(rule)
    order = [first, *[k for k in range(len(objective_names)) if k != first]]
    return max(range(len(points)), key=lambda i: tuple(scored[i, k] for k in order))
