"""Multi-objective sweeps for real: an Optuna study of two objectives records its Pareto front
(the summary, the parent run, each front run's tag, the leaderboard), saves the point its rule
picks as the experiment, picks another on request, and refuses what Optuna cannot do."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from twrl_exp.build import project_root
from twrl_exp.leaderboard import main as leaderboard
from twrl_exp.leaderboard.records import PARETO_RULE
from twrl_exp.objectives import PARETO_TAG

OBJECTIVES = "[best_mean_return,seconds_to_solve]"
BUDGET = [
    "train.max_env_steps=3000",
    "update.steps_per_batch=500",
    "eval.every_steps=1000",  # evaluations happen: a multi-objective trial must not report them
    "eval.episodes=1",
    "monitor.console=false",
    "monitor.checkpoint.enabled=false",
    "monitor.video.enabled=false",
    "monitor.mlflow.log_model=false",
    "monitor.mlflow.system_metrics=false",
]
N_TRIALS = 6


def train_in(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python train.py -m ARGS`` with its stores and sweep folder in ``tmp``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(project_root()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    return subprocess.run(
        [sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={tmp / 'multirun'}"],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def cli(tmp: Path, *args: str, study: str = "pareto") -> subprocess.CompletedProcess[str]:
    """An Optuna study of ``N_TRIALS`` random trials over the learning rate and net size."""
    return train_in(
        tmp,
        "hydra/sweeper=twrl_optuna",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.storage=sqlite:///{tmp / 'optuna.db'}",
        f"hydra.sweeper.experiment_dir={tmp / 'experiment'}",
        f"hydra.sweeper.n_trials={N_TRIALS}",
        "hydra.sweeper.sampler.name=random",
        "update.lr=tag(log,interval(1e-4,5e-2))",
        "model.hidden_sizes=choice([16],[64,64])",
        *BUDGET,
        *args,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("pareto")
    result = cli(tmp, f"hydra.sweeper.objective={OBJECTIVES}", "hydra.sweeper.pruner.name=none")
    assert result.returncode == 0, result.stderr
    return tmp, result.stdout


def study_of(tmp: Path, name: str = "pareto") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp / 'optuna.db'}")


def runs_of(tmp: Path) -> tuple[MlflowClient, object, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("CartPole-v1")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "optuna"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, children


def dominated(a: list[float], b: list[float]) -> bool:
    """Whether ``b`` dominates ``a`` (maximise the first value, minimise the second)."""
    better_or_equal = b[0] >= a[0] and b[1] <= a[1]
    return better_or_equal and (b[0] > a[0] or b[1] < a[1])


def test_the_study_has_two_objectives_and_its_front_is_recorded(sweep) -> None:
    tmp, out = sweep
    study = study_of(tmp)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["best_mean_return", "seconds_to_solve"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    # No intermediate reports (Optuna's rule for several objectives), though each evaluated.
    assert all(not t.intermediate_values for t in complete)
    # The front, by its definition, from the trials' values.
    expected = sorted(
        t.number
        for t in complete
        if not any(dominated(t.values, o.values) for o in complete if o is not t)
    )
    assert expected == sorted(t.number for t in study.best_trials)
    assert f"Pareto front: {len(expected)} of {N_TRIALS} trials" in out

    client, parent, children = runs_of(tmp)
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:  # it evaluated during training: 3 evaluations, none reported
        history = client.get_metric_history(child.info.run_id, "eval/mean_return")
        assert len(history) >= 3
    # Each child run logs both values, as the study has them.
    by_trial = {int(c.data.tags["optuna.trial"]): c for c in children}
    for t in complete:
        m = by_trial[t.number].data.metrics
        assert m["objective.best_mean_return"] == pytest.approx(t.values[0])
        assert m["objective.seconds_to_solve"] == pytest.approx(t.values[1])
        assert "objective" not in m
    # The parent: the front's trials, its size, the JSON record, the plots.
    assert parent.data.tags["pareto.trials"] == ",".join(map(str, expected))
    assert parent.data.metrics["pareto_points"] == len(expected)
    assert parent.data.tags["objective"] == (
        "best_mean_return (maximize), seconds_to_solve (minimize)"
    )
    path = client.download_artifacts(parent.info.run_id, "optuna/pareto_front.json", str(tmp))
    record = json.loads(Path(path).read_text())
    assert record["objectives"] == ["best_mean_return", "seconds_to_solve"]
    assert record["directions"] == ["maximize", "minimize"]
    assert [p["trial"] for p in record["points"]] == expected
    for point in record["points"]:
        trial = study.trials[point["trial"]]
        assert point["values"] == dict(zip(record["objectives"], trial.values, strict=True))
        assert point["params"] == trial.params
        assert point["runs"] == [by_trial[point["trial"]].info.run_id]
    page = client.download_artifacts(parent.info.run_id, "optuna/plots.html", str(tmp))
    text = Path(page).read_text(encoding="utf-8")
    for div in ("pareto_front", "history_0", "history_1"):
        assert f'<div id="{div}" class="plotly-graph-div"' in text
    assert "Not drawn" not in text
    # Exactly the front's runs carry the study's name.
    tagged = sorted(int(c.data.tags["optuna.trial"]) for c in children if PARETO_TAG in c.data.tags)
    assert tagged == expected
    assert {c.data.tags[PARETO_TAG] for c in children if PARETO_TAG in c.data.tags} == {"pareto"}


def knee(points: list[list[float]]) -> int:
    """The knee by its definition: scaled to [0, 1] per objective over the front (best 0),
    nearest the origin."""
    best = [max(p[0] for p in points), min(p[1] for p in points)]
    worst = [min(p[0] for p in points), max(p[1] for p in points)]
    span = [abs(b - w) or 1.0 for b, w in zip(best, worst, strict=True)]
    distance = [math.hypot((best[0] - p[0]) / span[0], (p[1] - best[1]) / span[1]) for p in points]
    return distance.index(min(distance))


def saved(tmp: Path) -> tuple[str, dict]:
    text = (tmp / "experiment" / "pareto.yaml").read_text()
    return text, yaml.safe_load(text)


def test_the_experiment_is_the_point_the_rule_picks_and_another_can_be_picked(sweep) -> None:
    tmp, out = sweep
    study = study_of(tmp)
    front = sorted(study.best_trials, key=lambda t: t.number)
    picked = front[knee([t.values for t in front])]
    text, body = saved(tmp)
    assert f"# Trial {picked.number} of the Pareto front of Optuna study 'pareto'" in text
    assert "picked as the knee" in text
    assert body["update"]["lr"] == pytest.approx(picked.params["update.lr"])
    assert "python train.py +experiment=pareto" in out
    _, parent, children = runs_of(tmp)
    run = next(c for c in children if c.data.tags["optuna.trial"] == str(picked.number))
    assert parent.data.tags["best.run_id"] == run.info.run_id
    assert parent.data.tags["pareto.picked"].startswith(f"trial {picked.number}: the knee")

    # The sweep again (its trials are done): the front's fastest, then a trial by number.
    fastest = min(front, key=lambda t: (t.values[1], -t.values[0]))
    again = cli(
        tmp,
        f"hydra.sweeper.objective={OBJECTIVES}",
        "hydra.sweeper.pruner.name=none",
        "hydra.sweeper.pick=seconds_to_solve",
    )
    assert again.returncode == 0, again.stderr
    assert len(study_of(tmp).trials) == N_TRIALS  # nothing trained again
    text, body = saved(tmp)
    assert f"# Trial {fastest.number} of the Pareto front" in text
    assert "picked as the front's best seconds_to_solve" in text
    assert body["update"]["lr"] == pytest.approx(fastest.params["update.lr"])
    last = front[-1]
    again = cli(
        tmp,
        f"hydra.sweeper.objective={OBJECTIVES}",
        "hydra.sweeper.pruner.name=none",
        f"hydra.sweeper.pick={last.number}",
    )
    assert again.returncode == 0, again.stderr
    assert f"# Trial {last.number} of the Pareto front" in saved(tmp)[0]


def test_the_leaderboard_marks_the_rows_on_the_front(sweep, capsys) -> None:
    tmp, _ = sweep
    assert (
        leaderboard(
            ["--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--markdown", "-", "--no-html"]
        )
        == 0
    )
    out = capsys.readouterr().out
    front = study_of(tmp).best_trials
    assert out.count("[Pareto front: pareto]") == len(front)
    assert PARETO_RULE in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "hydra.sweeper.pruner.name=median cannot prune a study of 2 objectives"),
        (
            ["hydra.sweeper.pruner.name=none", "hydra.sweeper.sampler.name=cmaes"],
            "hydra.sweeper.sampler.name=cmaes cannot sample a study of 2 objectives",
        ),
        (
            ["hydra.sweeper.pruner.name=none", "hydra.sweeper.pick=fastest"],
            "hydra.sweeper.pick=fastest is invalid: it must be knee, one of the objectives",
        ),
        (
            ["hydra.sweeper.pruner.name=none", "hydra.sweeper.direction=maximize"],
            "hydra.sweeper.direction=maximize is invalid",
        ),
        (
            ["hydra.sweeper.pruner.name=none", "hydra.sweeper.objective=[auc,fastest]"],
            "hydra.sweeper.objective=[auc,fastest] is invalid",
        ),
    ],
)
def test_what_optuna_cannot_do_with_several_objectives_is_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    given = [f"hydra.sweeper.objective={OBJECTIVES}", *args]
    if any(a.startswith("hydra.sweeper.objective=[auc") for a in args):
        given = args
    result = cli(tmp_path, *given)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: {message}"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "optuna.db").exists()  # nothing left behind
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "multirun").exists()


def test_a_study_resumed_with_other_directions_is_refused(sweep) -> None:
    tmp, _ = sweep
    result = cli(tmp)  # one objective, into the two-objective study
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: The Optuna study 'pareto' in sqlite:///{tmp / 'optuna.db'} was created to "
        "maximize and minimize its objective(s), not to maximize: give hydra.sweeper.objective "
        "and direction as when it was created, or a new hydra.sweeper.study_name."
    )
    assert len(study_of(tmp).trials) == N_TRIALS


def test_a_population_of_trials_tells_each_its_values(tmp_path: Path) -> None:
    """Trials of two seeds each, trained as one population (their intermediate values are not
    reported, as Optuna allows none): each trial gets the seeds' mean of each objective."""
    result = cli(
        tmp_path,
        f"hydra.sweeper.objective={OBJECTIVES}",
        "hydra.sweeper.pruner.name=none",
        "hydra/launcher=population",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.seeds_per_trial=2",
        study="pop",
    )
    assert result.returncode == 0, result.stderr
    study = study_of(tmp_path, "pop")
    trials = study.trials
    assert len(trials) == N_TRIALS
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in trials)
    _, _, children = runs_of(tmp_path)
    for t in trials:
        seeds = [c for c in children if c.data.tags["optuna.trial"] == str(t.number)]
        assert len(seeds) == 2
        mean = sum(c.data.metrics["objective.best_mean_return"] for c in seeds) / 2
        assert t.values[0] == pytest.approx(mean)


def test_a_grid_sweep_of_two_objectives_marks_its_front(tmp_path: Path) -> None:
    result = train_in(
        tmp_path, "update.lr=1e-4,1e-2,3e-2", f"trial.objective={OBJECTIVES}", *BUDGET
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("CartPole-v1")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "sweep" in r.data.tags]
    children = [r for r in runs if "sweep" not in r.data.tags]
    points = {
        c.info.run_id: [
            c.data.metrics["objective.best_mean_return"],
            c.data.metrics["objective.seconds_to_solve"],
        ]
        for c in children
    }
    front = [k for k, p in points.items() if not any(dominated(p, q) for q in points.values())]
    assert f"{len(front)} on the Pareto front of best_mean_return (maximize)" in result.stdout
    assert parent.data.tags["best.run_id"] in front
