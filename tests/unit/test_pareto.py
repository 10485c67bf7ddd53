"""Several objectives at once: their names and directions, a run's values, a trial's values over
its seeds, the Pareto front (checked against Optuna's own) and the rules that pick a point."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from omegaconf import OmegaConf

from twrl_exp.errors import ConfigError
from twrl_exp.objectives import (
    DIRECTIONS,
    KNEE,
    aggregate,
    directions,
    names,
    pareto_front,
    pick,
    values,
)
from twrl_exp.runner import History


def test_objective_names_come_as_one_name_or_a_list() -> None:
    assert names("auc") == ("auc",)
    assert names(["auc", "seconds_to_solve"]) == ("auc", "seconds_to_solve")
    assert names(OmegaConf.create({"o": ["auc", "neg_steps_to_solve"]}).o) == (
        "auc",
        "neg_steps_to_solve",
    )
    with pytest.raises(ConfigError, match=r"trial.objective=\[auc,fast\] is invalid: it must be"):
        names(["auc", "fast"])
    with pytest.raises(ConfigError, match=r"trial\.objective=fast is invalid"):
        names("fast")
    with pytest.raises(ConfigError, match="names an objective twice"):
        names(["auc", "auc"])
    with pytest.raises(ConfigError, match=r"objective=\[\] is invalid"):
        names([])


def test_each_objective_has_its_own_direction_unless_told() -> None:
    assert DIRECTIONS["seconds_to_solve"] == "minimize"
    assert directions("best_mean_return", None) == ["maximize"]
    assert directions(["best_mean_return", "seconds_to_solve"], None) == ["maximize", "minimize"]
    assert directions("auc", "minimize") == ["minimize"]
    both = ["auc", "seconds_to_solve"]
    assert directions(both, ["minimize", "maximize"]) == ["minimize", "maximize"]
    with pytest.raises(ConfigError, match=r"direction=maximize is invalid: .* a list of 2 of them"):
        directions(["auc", "seconds_to_solve"], "maximize")
    with pytest.raises(ConfigError, match=r"direction=\[up\] is invalid"):
        directions(["auc"], ["up"])


def test_a_run_gives_one_value_per_objective() -> None:
    h = History(
        env_steps=400,
        train_time=2.5,
        returns=[10.0, 20.0, 30.0],
        trailing=[10.0, 15.0, 20.0],
        end_steps=[100, 200, 300],
    )
    got = values(["best_mean_return", "seconds_to_solve"], h, window=2, budget_steps=1000)
    assert got == (20.0, 2.5)  # unsolved: its training seconds so far
    h.solved_step, h.solved_time = 300, 1.25
    got = values(["seconds_to_solve", "neg_steps_to_solve"], h, window=2, budget_steps=1000)
    assert got == (1.25, -300.0)
    assert values("best_mean_return", h, window=2, budget_steps=None) == 20.0  # a float
    assert values(["best_mean_return"], h, window=2, budget_steps=None) == 20.0


def test_a_trial_of_several_seeds_aggregates_each_objective_on_its_own() -> None:
    seeds = [(1.0, 10.0), (2.0, 30.0), (6.0, 20.0)]
    assert aggregate("mean", seeds) == (3.0, 20.0)
    assert aggregate("mean", [1.0, 2.0, 6.0]) == 3.0
    got = aggregate("mean", [(1.0, math.nan), (2.0, 3.0)])
    assert isinstance(got, tuple)
    assert got[0] == 1.5
    assert math.isnan(got[1])


def _optuna_front(points: list[tuple[float, ...]], ways: list[str]) -> list[int]:
    study = optuna.create_study(directions=ways)
    for p in points:
        study.add_trial(optuna.trial.create_trial(values=list(p)))
    return sorted(t.number for t in study.best_trials)


@pytest.mark.parametrize("ways", [["maximize", "maximize"], ["maximize", "minimize"]])
def test_the_front_is_optunas_front(ways: list[str]) -> None:
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(1, 25))
        # coarse values: ties and duplicate points happen
        points = [tuple(float(v) for v in rng.integers(0, 6, size=2)) for _ in range(n)]
        assert pareto_front(points, ways) == _optuna_front(points, ways), (trial, points)
    three = [tuple(float(v) for v in rng.integers(0, 4, size=3)) for _ in range(30)]
    ways3 = ["maximize", "minimize", "maximize"]
    assert pareto_front(three, ways3) == _optuna_front(three, ways3)


def test_a_point_with_nan_is_never_on_the_front() -> None:
    assert pareto_front([(1.0, math.nan), (0.0, 0.0)], ["maximize", "maximize"]) == [1]


def test_the_knee_is_nearest_the_ideal_point_of_the_scaled_front() -> None:
    # return (max) against seconds (min): scaled, the ideal is (500, 10).
    front = [(500.0, 100.0), (450.0, 20.0), (200.0, 10.0)]
    ways = ["maximize", "minimize"]
    objectives = ["best_mean_return", "seconds_to_solve"]
    # distances: (0, 1) -> 1; (50/300, 10/90) -> 0.2; (1, 0) -> 1
    assert pick(front, ways, KNEE, objectives) == 1
    # The scale is the front's: the same front in other units picks the same point.
    rescaled = [(r / 100, s * 60) for r, s in front]
    assert pick(rescaled, ways, KNEE, objectives) == 1
    assert pick(front, ways, "best_mean_return", objectives) == 0
    assert pick(front, ways, "seconds_to_solve", objectives) == 2
    # A tie on the named objective goes to the better value of the next one.
    tied = [(500.0, 100.0), (500.0, 50.0), (100.0, 1.0)]
    assert pick(tied, ways, "best_mean_return", objectives) == 1
    # One point, or an objective equal everywhere, still gives an answer.
    assert pick([(1.0, 2.0)], ways, KNEE, objectives) == 0
    assert pick([(1.0, 5.0), (2.0, 5.0)], ways, KNEE, objectives) == 1
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.pick=fastest is invalid"):
        pick(front, ways, "fastest", objectives)


def test_knee_against_a_brute_force_definition() -> None:
    rng = np.random.default_rng(1)
    ways = ["maximize", "minimize"]
    for _ in range(30):
        points = [tuple(rng.normal(size=2)) for _ in range(12)]
        front = [points[i] for i in pareto_front(points, ways)]
        ideal = (max(p[0] for p in front), min(p[1] for p in front))
        nadir = (min(p[0] for p in front), max(p[1] for p in front))

        def distance(
            p: tuple[float, ...], ideal: tuple[float, ...] = ideal, nadir: tuple[float, ...] = nadir
        ) -> float:
            parts = []
            for k in range(2):
                span = abs(ideal[k] - nadir[k]) or 1.0
                parts.append(((p[k] - ideal[k]) / span) ** 2)
            return math.sqrt(sum(parts))

        best = min(range(len(front)), key=lambda i: distance(front[i]))
        assert pick(front, ways, KNEE, ["a", "b"]) == best
