"""Sweeps end to end: grid multiruns and Optuna studies against temporary MLflow/Optuna stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from twrl_exp.build import project_root
from twrl_exp.store import open_client

TINY = [
    "train.max_env_steps=4000",
    "monitor.console=false",
    "eval.every_steps=null",
    "monitor.checkpoint.enabled=false",
]


def sweep_cli(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    return subprocess.run(
        [sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def all_runs(uri: str, experiment: str = "CartPole-v1"):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, ([] if exp is None else client.search_runs([exp.experiment_id]))


def split(runs):
    parents = [r for r in runs if "sweep" in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_grid_sweep_nests_every_job_under_one_parent(tmp_path, isolated_mlflow) -> None:
    result = sweep_cli(tmp_path, "update.lr=1e-3,1e-2", "seed=0,1", *TINY)
    assert result.returncode == 0, result.stderr
    _, runs = all_runs(isolated_mlflow)
    (parent,), children = split(runs)
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    names = {c.info.run_name for c in children}
    assert "lr=0.01 s1 reinforce/categorical/mlp CartPole-v1" in names
    # The parent summarises its children: what was swept, and the best child with its link.
    assert parent.info.run_name == "grid lr=1e-3,1e-2 seed=0,1"
    assert parent.data.params == {"update.lr": "1e-3,1e-2", "seed": "0,1"}
    best = max(children, key=lambda c: c.data.metrics["objective"])
    assert parent.data.tags["best.run_id"] == best.info.run_id
    assert best.info.run_id in parent.data.tags["best.url"]
    assert parent.data.metrics["best/best_mean_return"] == best.data.metrics["best_mean_return"]
    assert parent.data.metrics["jobs_finished"] == 4
    assert f"best: {best.info.run_name}" in result.stdout
    # Each job ends with one line; the sweep's table at the end says the rest.
    for child in children:
        assert result.stdout.count(f"FINISHED: run {child.info.run_id}") == 1
    assert "  view " not in result.stdout
    assert "resume=" not in result.stdout


def default_folder_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python train.py -m ARGS`` exactly as a user types it: no ``hydra.sweep.dir``, so the
    sweep gets the default ``multirun/<date>/<time>-<pid>`` folder (under tmp_path, the project)."""
    env = {**os.environ, "PYTHONPATH": str(project_root()), "TWRL_PROJECT_ROOT": str(tmp_path)}
    return subprocess.run(
        [sys.executable, str(project_root() / "train.py"), "-m", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_nested_with_table(result, uri: str, jobs: int) -> list:
    assert result.returncode == 0, result.stderr
    _, runs = all_runs(uri)
    (parent,), children = split(runs)
    assert len(children) == jobs
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.data.metrics["jobs_finished"] == jobs
    assert f"sweep: {jobs} runs" in result.stdout
    best = parent.data.tags["best.run_name"]
    assert f"best: {best}" in result.stdout
    return children


def test_a_joblib_grid_in_the_default_sweep_folder_nests_its_jobs(tmp_path, isolated_mlflow):
    result = default_folder_cli(
        tmp_path,
        "update.lr=1e-3,1e-2",
        "train.max_env_steps=3000",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY[1:],
    )
    children = assert_nested_with_table(result, isolated_mlflow, 2)
    # The jobs' names keep the value they were given (the parent file says what was swept).
    assert {c.info.run_name.split()[0] for c in children} == {"lr=0.001", "lr=0.01"}
    (folder,) = (tmp_path / "multirun").glob("*/*")  # one sweep folder, the jobs' inside it
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1"]


def test_the_default_optuna_sweep_in_the_default_folder_nests_its_trials(tmp_path, isolated_mlflow):
    result = default_folder_cli(
        tmp_path,
        "+sweep=cartpole_reinforce",
        "hydra.sweeper.n_trials=4",
        "train.max_env_steps=3000",
        "eval.every_steps=1500",
        "eval.episodes=2",
    )
    assert_nested_with_table(result, isolated_mlflow, 4)
    saved = tmp_path / "conf" / "experiment" / "cartpole_reinforce.yaml"
    assert saved.is_file()
    # Where it went and how to re-run it, whole (not cut by the table at 80 columns).
    assert f"\nsaved  {saved}\n" in result.stdout
    assert "\nre-run python train.py +experiment=cartpole_reinforce\n" in result.stdout


@pytest.mark.parametrize(
    ("grid", "sentence"),
    [
        (["update.lr=0.01,abc"], "update.lr=abc is invalid: update.lr must be a number."),
        (["update.nosuch=1,2"], "update.nosuch is not a key of update: valid keys are name,"),
        (["seed=0,1", "update.baseline=none,bogus"], "update.baseline must be one of none,"),
    ],
    ids=["wrong-type", "unknown-key", "bad-choice"],
)
def test_a_grid_with_a_bad_value_is_refused_before_anything_is_recorded(
    tmp_path, isolated_mlflow, grid, sentence
) -> None:
    result = default_folder_cli(tmp_path, *grid, "hydra/launcher=joblib")
    assert result.returncode == 2, result.stderr
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, lock, sweep folder
    assert not Path(isolated_mlflow.removeprefix("sqlite:///")).exists()


def test_a_failing_grid_job_is_recorded_and_the_others_go_on(tmp_path, isolated_mlflow) -> None:
    result = sweep_cli(tmp_path, "update.lr=-1,1e-3", *TINY)
    assert result.returncode != 0
    assert "update.lr=-1.0 is invalid" in result.stderr
    _, runs = all_runs(isolated_mlflow)
    _, children = split(runs)
    statuses = sorted((c.info.status, c.info.run_name) for c in children)
    assert [s for s, _ in statuses] == ["FAILED", "FINISHED"]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "update.lr=-1.0 is invalid" in failed.data.tags["error"]
    # Hydra stops before its end-of-sweep callback when a job fails: the table and the
    # parent's summary are still made, and the parent ends FAILED.
    (parent,), _ = split(runs)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["jobs_failed"] == 1
    assert parent.data.metrics["jobs_finished"] == 1
    assert "sweep: 2 runs" in result.stdout


def test_parallel_jobs_on_one_sqlite_store_lose_no_runs_and_no_metrics(
    tmp_path, isolated_mlflow
) -> None:
    result = sweep_cli(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2,3",
        "train.max_env_steps=20000",
        "monitor.console=false",
        "eval.every_steps=5000",
        "monitor.mlflow.flush_every_s=0.05",
        "monitor.checkpoint.every_steps=5000",
    )
    assert result.returncode == 0, result.stderr
    client, runs = all_runs(isolated_mlflow)
    _, children = split(runs)
    assert sorted(c.data.tags["seed"] for c in children) == ["0", "1", "2", "3"]
    for child in children:
        episodes = client.get_metric_history(child.info.run_id, "episode/return")
        assert len(episodes) == child.data.metrics["episodes"]
        evals = client.get_metric_history(child.info.run_id, "eval/mean_return")
        assert len(evals) == 4  # at 5k, 10k, 15k, 20k env steps


def optuna_args(tmp_path: Path, n_trials: int, *extra: str) -> list[str]:
    return [
        "hydra/sweeper=twrl_optuna",
        "hydra.sweeper.study_name=tiny",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"hydra.sweeper.experiment_dir={tmp_path / 'extra' / 'experiment'}",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.sampler.seed=3",
        "hydra.sweeper.objective=auc",
        "update.lr=tag(log,interval(1e-5,5e-2))",
        "train.max_env_steps=30000",
        "eval.every_steps=5000",
        "eval.episodes=3",
        "monitor.console=false",
        "monitor.checkpoint.enabled=false",
        *extra,
    ]


def load(tmp_path: Path) -> optuna.Study:
    from hydra_plugins.twrl_optuna_sweeper._trial import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")  # locked while created
    return optuna.load_study(study_name="tiny", storage=storage)


def test_optuna_sweep_prunes_saves_the_best_and_records_plots(tmp_path, isolated_mlflow) -> None:
    result = sweep_cli(
        tmp_path,
        *optuna_args(
            tmp_path,
            8,
            "hydra.sweeper.pruner.name=median",
            "hydra.sweeper.pruner.n_startup_trials=2",
            "hydra.sweeper.n_jobs=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ),
    )
    assert result.returncode == 0, result.stderr
    study = load(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 8
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, "the median pruner stopped no trial"
    assert all(t.user_attrs["env_steps"] < 30000 for t in pruned)  # stopped early ...
    assert all(t.user_attrs["env_steps"] >= 30000 for t in complete)  # ... the rest did not

    client, runs = all_runs(isolated_mlflow)
    (parent,), children = split(runs)
    assert parent.data.tags["sweep"] == "optuna"
    assert len(children) == 8
    assert sum(c.data.tags.get("stopped") == "pruned" for c in children) == len(pruned)
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert plots == {"optuna/plots.html"}
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)

    saved = tmp_path / "extra" / "experiment" / "tiny.yaml"
    assert f"lr: {study.best_params['update.lr']}" in saved.read_text()
    rerun = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-cd",
            str(tmp_path / "extra"),
            "+experiment=tiny",
            "monitor.console=false",
            f"hydra.run.dir={tmp_path / 'rerun'}",
        ],
        cwd=project_root(),
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    _, runs = all_runs(isolated_mlflow)
    again = [
        r for r in runs if "sweep" not in r.data.tags and "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(again) == 1
    assert again[0].data.params["update.lr"] == str(study.best_params["update.lr"])


def test_a_killed_optuna_sweep_resumes_to_exactly_n_trials(tmp_path, isolated_mlflow) -> None:
    args = optuna_args(tmp_path, 5, "hydra.sweeper.pruner.name=none", "train.max_env_steps=60000")
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    cmd = [sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={tmp_path / 'first'}"]
    proc = subprocess.Popen(
        cmd, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def two_finished() -> bool:
        try:
            return sum(t.state.is_finished() for t in load(tmp_path).get_trials()) >= 2
        except KeyError:  # the study does not exist yet
            return False

    wait_until(two_finished, timeout=480)  # (a safety net: about 20 s on an idle machine)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    interrupted = load(tmp_path).get_trials()
    assert 2 <= sum(t.state == TrialState.COMPLETE for t in interrupted) < 5

    result = sweep_cli(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert all(t.user_attrs.get("interrupted") for t in trials if t.state == TrialState.FAIL)
    _, runs = all_runs(isolated_mlflow)
    parents, _ = split(runs)
    assert len(parents) == 1  # the rerun reopened the study's parent run
    assert parents[0].info.status == "FINISHED"


def test_ctrl_c_stops_a_grid_sweep_and_marks_it_killed(tmp_path, isolated_mlflow) -> None:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "seed=0,1,2",
        "train.max_env_steps=5000000",
        "monitor.console=false",
        "eval.every_steps=null",
        "monitor.mlflow.flush_every_s=0.2",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def training() -> bool:
        _, children = split(all_runs(isolated_mlflow)[1])
        return bool(children) and any(c.data.metrics.get("train/steps_per_s") for c in children)

    wait_until(training, timeout=480)  # (a safety net)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    _, runs = all_runs(isolated_mlflow)
    (parent,), children = split(runs)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["KILLED"]  # the later jobs never started


def start_sweep(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    cmd = [sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={tmp_path / name}"]
    return subprocess.Popen(
        cmd,
        cwd=project_root(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def session_processes(session: int) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == session:
                found.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def wait_until(predicate, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


def trials_in(tmp_path: Path, state: TrialState) -> int:
    try:
        return sum(t.state == state for t in load(tmp_path).get_trials())
    except KeyError:  # the study does not exist yet
        return 0


def test_a_sweep_killed_9_resumes_to_n_trials_without_repeating_itself(
    tmp_path, isolated_mlflow
) -> None:
    """kill -9 of the sweep mid-trial: the rerun fails the dead trial (its process is gone),
    finishes exactly n_trials, and its sampler proposes nothing it proposed before."""
    args = optuna_args(tmp_path, 5, "hydra.sweeper.pruner.name=none", "train.max_env_steps=60000")
    proc = start_sweep(tmp_path, "first", *args)
    wait_until(
        lambda: (
            trials_in(tmp_path, TrialState.COMPLETE) >= 2
            and trials_in(tmp_path, TrialState.RUNNING) == 1
        )
    )
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    result = sweep_cli(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert lost
    assert all(t.user_attrs.get("lost") for t in lost)
    values = [t.params["update.lr"] for t in trials]
    assert len(set(values)) == len(values), "the resumed sampler repeated a proposal"
    _, runs = all_runs(isolated_mlflow)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents, _ = split(runs)
    assert [p.info.status for p in parents] == ["FINISHED"]


JOBLIB_FOREVER = [
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.pruner.name=none",
    "train.max_env_steps=50000000",
    "monitor.mlflow.flush_every_s=0.2",
]


def two_trials_training(tmp_path: Path, uri: str) -> bool:
    _, runs = all_runs(uri)
    _, children = split(runs)
    live = [c for c in children if c.data.metrics.get("train/steps_per_s")]
    return trials_in(tmp_path, TrialState.RUNNING) == 2 and len(live) == 2


def test_ctrl_c_to_a_joblib_sweeps_process_group_ends_it_cleanly(tmp_path, isolated_mlflow) -> None:
    open_client(isolated_mlflow)  # the store exists: polling it below never races its creation
    proc = start_sweep(tmp_path, "first", *optuna_args(tmp_path, 6, *JOBLIB_FOREVER))
    wait_until(lambda: two_trials_training(tmp_path, isolated_mlflow))
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted:" in stderr
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs.get("interrupted") for t in trials)
    _, runs = all_runs(isolated_mlflow)
    parents, children = split(runs)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert sorted(c.info.status for c in children) == ["KILLED", "KILLED"]
    wait_until(lambda: not session_processes(proc.pid), timeout=30)


def test_workers_die_with_a_killed_joblib_sweep(tmp_path, isolated_mlflow) -> None:
    """kill -9 of the sweep process alone (an OOM kill): its workers notice, close their runs
    as KILLED, fail their trials, and exit instead of training on for minutes."""
    open_client(isolated_mlflow)  # the store exists: polling it below never races its creation
    proc = start_sweep(tmp_path, "first", *optuna_args(tmp_path, 6, *JOBLIB_FOREVER))
    wait_until(lambda: two_trials_training(tmp_path, isolated_mlflow))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_until(lambda: not session_processes(proc.pid), timeout=60)
    _, runs = all_runs(isolated_mlflow)
    _, children = split(runs)
    assert sorted(c.info.status for c in children) == ["KILLED", "KILLED"]
    trials = load(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
