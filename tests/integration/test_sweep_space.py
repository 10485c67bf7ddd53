"""An Optuna search space the jobs could not compose is refused before anything is recorded.

Run as a user runs a sweep, ``python train.py -m +sweep=…`` in a project folder of its own: an
unknown key, an interval over a key that is not a number, a choice value the key's type cannot
take, an option a group lacks, given in the sweep file's ``hydra.sweeper.params`` or on the
command line, is one sentence naming the valid keys or values (exit 2), and the project holds
no study, no MLflow store, no sweep folder afterwards. (Before, such a sweep exited 0 with its
trials RUNNING and counted toward ``n_trials`` under an empty FINISHED parent run.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from twrl_exp.build import project_root


def user_sweep(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python train.py -m ARGS`` from the project folder, as a user types it."""
    project.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(project_root()), "TWRL_PROJECT_ROOT": str(project)}
    return subprocess.run(
        [sys.executable, str(project_root() / "train.py"), "-m", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_refused(result: subprocess.CompletedProcess[str], sentence: str, project: Path) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert sentence in errors[0], result.stderr
    assert "+update.nosuch_knob" not in result.stderr  # not Hydra's advice to add the key
    leftovers = sorted(p.name for p in project.iterdir() if p.name != "conf")
    assert leftovers == []  # no optuna/ study, no mlflow.db, no multirun/ folder


@pytest.mark.parametrize(
    ("sweep", "sentence"),
    [
        (
            ["update.nosuch_knob=interval(0,1)"],
            "the command line: update.nosuch_knob is not a key of update (reinforce); "
            "valid: name, gamma, steps_per_batch, baseline,",
        ),
        (
            ["update.baseline=interval(0,1)"],
            "update.baseline=interval(0,1) is invalid: update.baseline is one of none, average, "
            "value, which an interval or range cannot sweep; use choice(...) of its values.",
        ),
        (
            ["update.normalize_advantages=interval(0,1)"],  # 0 and 1 would pass as booleans
            "update.normalize_advantages is a boolean (true or false), which an interval",
        ),
        (["env.id=interval(0,1)"], "env.id is a string, which an interval or range cannot"),
        (
            ["update.steps_per_batch=interval(1000.0,4000.0)"],
            "update.steps_per_batch is an integer; use tag(int, interval(low, high)) or range(",
        ),
        (
            ["update.steps_per_batch=choice(1000,lots)"],
            "'lots' is not a value update.steps_per_batch can take (an integer).",
        ),
        (
            ["model.hidden_sizes=choice([64],[big])"],
            "['big'] is not a value model.hidden_sizes can take (a list of integers).",
        ),
        (
            ["update=choice(reinforce,nosuch)"],
            "nosuch is not an option of update; valid: a2c, dqn, none, ppo, reinforce,",
        ),
        (
            ["update.optimizer_kwargs.momentum=interval(0.1,0.9)"],
            "update.optimizer_kwargs.momentum is not a key of update.optimizer_kwargs; it has no "
            "keys yet (a free-form group: add the key with +update.optimizer_kwargs.momentum=...).",
        ),
        (  # the sweep file's update.baseline exists for reinforce, not for ppo
            ["update=choice(reinforce,ppo)"],
            "hydra.sweeper.params: update.baseline is not a key of update (ppo); valid: name,",
        ),
    ],
    ids=[
        "unknown-key",
        "interval-over-enum",
        "interval-over-bool",
        "interval-over-string",
        "float-interval-over-int",
        "bad-choice-value",
        "bad-list-choice",
        "unknown-group-option",
        "unknown-key-of-a-free-form-group",
        "key-missing-in-one-option",
    ],
)
def test_a_search_space_the_config_cannot_take_is_refused_before_anything_exists(
    tmp_path, isolated_mlflow, sweep, sentence
) -> None:
    project = tmp_path / "project"
    result = user_sweep(project, "+sweep=cartpole_reinforce", *sweep)
    assert_refused(result, sentence, project)
    assert not Path(isolated_mlflow.removeprefix("sqlite:///")).exists()


def test_an_unknown_key_in_a_sweep_files_params_is_refused(tmp_path, isolated_mlflow) -> None:
    """The sweep file's own ``hydra.sweeper.params`` (here a copy of the shipped one, in the
    project's config folder, with one key that does not exist)."""
    project = tmp_path / "project"
    sweeps = project / "conf" / "sweep"
    sweeps.mkdir(parents=True)
    shipped = (project_root() / "sweeps" / "cartpole_reinforce.yaml").read_text()
    assert "    params:\n" in shipped
    unknown = "    params:\n      update.nosuch_knob: interval(0, 1)\n"
    bad = shipped.replace("    params:\n", unknown)
    (sweeps / "bad_space.yaml").write_text(bad)
    result = user_sweep(project, "--config-dir", str(project / "conf"), "+sweep=bad_space")
    assert_refused(
        result,
        "hydra.sweeper.params: update.nosuch_knob is not a key of update (reinforce); valid: ",
        project,
    )
    assert not Path(isolated_mlflow.removeprefix("sqlite:///")).exists()


def test_jobs_that_cannot_start_stop_the_sweep_and_count_for_nothing(
    tmp_path, isolated_mlflow
) -> None:
    """A launch that fails as a whole (here every job's config fails to compose: ``++`` skips
    the check) is tried three times, then the sweep stops in one sentence (exit 1): its trials
    are FAIL ``lost`` (not counted), none is left RUNNING, and its parent run is FAILED with the
    reason. Before, the trials stayed RUNNING, counted, and the sweep exited 0."""
    project = tmp_path / "project"
    result = user_sweep(
        project,
        "+sweep=cartpole_reinforce",
        "++update.lr.x=choice(1,2)",
        "hydra.sweeper.n_trials=2",
        "train.max_env_steps=1000",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "The launcher failed 3 times in a row (" in errors[0]
    assert "run the same command again to resume the study." in errors[0]
    storage = f"sqlite:///{project / 'optuna' / 'cartpole_reinforce.db'}"
    trials = optuna.load_study(study_name="cartpole_reinforce", storage=storage).get_trials()
    assert trials
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("lost") for t in trials)
    from mlflow import MlflowClient

    client = MlflowClient(isolated_mlflow)
    (experiment,) = [e for e in client.search_experiments() if e.name == "CartPole-v1"]
    (parent,) = client.search_runs([experiment.experiment_id])
    assert parent.info.status == "FAILED"
    assert parent.data.tags["twrl.end_reason"].startswith("stopped: The launcher failed 3 times")


def test_a_negative_storage_retry_window_is_refused(tmp_path, isolated_mlflow) -> None:
    project = tmp_path / "project"
    result = user_sweep(project, "+sweep=cartpole_reinforce", "hydra.sweeper.storage_retry_s=-1")
    assert_refused(
        result, "hydra.sweeper.storage_retry_s=-1 is invalid: it must be >= 0 (seconds).", project
    )
