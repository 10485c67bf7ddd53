"""Populations as users run them: ``hydra/launcher=population`` and ``trial.seeds=N`` train
several runs in one process, each recorded as its single run is, each failing, killed and
resumed on its own.

Real ``python train.py`` processes against a temporary SQLite store.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.test_faults import (
    QUIET,
    _no_run_outlives_its_test,  # noqa: F401 (an autouse fixture: no run outlives its test)
    all_runs,
    assert_one_timeline,
    checkpoint_step,
    divergence,
    start,
    train,
    wait_for,
)
from twrl_exp.store import open_client

PPO = ["update=ppo", "eval.every_steps=null", "eval.final=false", *QUIET]
POPULATION = "hydra/launcher=population"
CAR = "MountainCar-v0"


def runs_by_name(uri: str) -> dict[str, object]:
    return {r.info.run_name: r for r in all_runs(uri)}


def test_a_grid_of_two_structures_trains_as_two_populations_each_job_a_single_runs_record(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """2 rollout lengths (structure) x 2 seeds x their own learning rates: two populations of
    two jobs; every job is a run with its own params, metrics on env steps, checkpoint and
    summary, nested under the sweep's parent run, with what a single run of its config has."""
    grid = [
        "-m",
        POPULATION,
        "update.n_steps=16,32",
        "seed=0,1",
        "update.lr=0.001",
        "train.max_env_steps=3000",
        *PPO,
    ]
    result = train(tmp_path, *grid)
    assert result.returncode == 0, result.stderr
    logs = result.stdout + result.stderr
    assert logs.count("Launching 2 jobs as one population") == 2, logs
    client = MlflowClient(tracking_uri=isolated_mlflow)
    runs = [r for r in all_runs(isolated_mlflow) if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 4
    seen = set()
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags.get("twrl.end_reason")
        params = run.data.params
        seen.add((params["update.n_steps"], params["seed"]))
        assert run.data.metrics["env_steps"] >= 3000
        assert checkpoint_step(isolated_mlflow, run.info.run_id) >= 3000
        assert_one_timeline(client, run)
    assert seen == {("16", "0"), ("16", "1"), ("32", "0"), ("32", "1")}
    single = train(
        tmp_path, "update.n_steps=16", "seed=0", "update.lr=0.001", "train.max_env_steps=3000", *PPO
    )
    assert single.returncode == 0, single.stderr
    (alone,) = [
        r
        for r in all_runs(isolated_mlflow)
        if "mlflow.parentRunId" not in r.data.tags
        and r.data.tags.get("twrl.sweep") is None
        and r.data.params.get("seed") == "0"
        and r.data.metrics.get("env_steps")
    ]
    member = next(
        r for r in runs if (r.data.params["update.n_steps"], r.data.params["seed"]) == ("16", "0")
    )
    assert set(member.data.params) == set(alone.data.params)
    assert set(member.data.metrics) == set(alone.data.metrics)
    assert {a.path for a in client.list_artifacts(member.info.run_id)} == {
        a.path for a in client.list_artifacts(alone.info.run_id)
    }
    differs = {k for k, v in member.data.params.items() if alone.data.params[k] != v}
    assert differs <= {"trial.population"}, differs


def test_a_td_lambda_grid_is_one_population_whose_members_record_their_single_runs_curves(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """An alpha x lambda grid of tile-coded TD(lambda) on MountainCar (the Sutton & Barto
    figure) is one population; each member's recorded learning curve is, value for value, the
    one its single run records. ``train/*`` rows are statistics over the window since the last
    flush, a wall-clock cadence (``monitor.mlflow.flush_every_s``), so their windows match only
    when both runs flush at the same steps: here once, at the end (CI's slow first steps once
    flushed the single run at step 1 and not the member)."""
    td = ["env=mountaincar", "model=tilecoding", "policy=egreedy", "update=td_lambda",
          "train.max_episodes=12", "eval.every_steps=null", "eval.final=false",
          "monitor.mlflow.flush_every_s=3600", *QUIET]  # fmt: skip
    result = train(tmp_path, "-m", POPULATION, "update.alpha=0.2,0.5", "update.lam=0,0.9", *td)
    assert result.returncode == 0, result.stderr
    assert "Launching 4 jobs as one population" in result.stdout + result.stderr
    client = MlflowClient(tracking_uri=isolated_mlflow)
    members = [r for r in all_runs(isolated_mlflow, CAR) if "mlflow.parentRunId" in r.data.tags]
    assert len(members) == 4
    assert all(r.info.status == "FINISHED" for r in members)
    single = train(tmp_path, "update.alpha=0.5", "update.lam=0.9", *td)
    assert single.returncode == 0, single.stderr
    (alone,) = [r for r in all_runs(isolated_mlflow, CAR) if r.info.run_id not in
                {m.info.run_id for m in members} and "sweep" not in r.data.tags]  # fmt: skip
    (member,) = [
        r for r in members if (r.data.params["update.alpha"], r.data.params["update.lam"])
        == ("0.5", "0.9")
    ]  # fmt: skip

    def curve(run, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]

    for key in ("episode/return", "episode/length", "train/td_error_rms", "train/policy/epsilon"):
        assert curve(member, key) == curve(alone, key), key
        assert curve(alone, key), key
    assert len(curve(alone, "train/td_error_rms")) == 1  # one window: the whole run
    assert len(curve(alone, "episode/return")) == 12
    learned = {json.dumps(curve(r, "train/td_error_rms")) for r in members}
    assert len(learned) == 4  # each member learned with its own alpha and lambda


def test_a_diverging_member_fails_alone_and_keeps_its_last_finite_checkpoint(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """A PPO member at lr=1e30 diverges at its first learn (a rollout of 32 x 8 env steps);
    the other member trains to its budget. The failed member says which checkpoint it keeps
    (a checkpoint is due every 100 steps, at the monitors' tick) and resumes alone with a sane
    learning rate."""
    grid = [
        "-m",
        POPULATION,
        "update=ppo",
        "update.lr=0.001,1e30",
        "train.max_env_steps=3000",
        "monitor.checkpoint.every_steps=100",
        "eval.every_steps=null",
        "eval.final=false",
        *QUIET,
    ]
    result = train(tmp_path, *grid)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Launching 2 jobs as one population" in result.stdout + result.stderr
    step, kept = divergence(result.stderr)
    assert step <= 256  # its first learn (autoreset steps are not counted)
    runs = {r.data.params["update.lr"]: r for r in all_runs(isolated_mlflow) if r.data.params}
    sane, diverged = runs["0.001"], runs["1e+30"]
    assert sane.info.status == "FINISHED"
    assert sane.data.metrics["env_steps"] >= 3000
    assert diverged.info.status == "FAILED"
    saved = diverged.data.tags.get("twrl.checkpoint")  # its first 100 steps take < 0.2 s
    if saved is None:
        assert kept == "keeps no checkpoint, since none was saved before then"
    else:
        record = json.loads(saved)
        assert kept == f"keeps its last finite checkpoint, from env step {record['env_steps']:,}"
        assert 100 <= record["env_steps"] < step
    resumed = train(tmp_path, f"resume={diverged.info.run_id}", "update.lr=0.001", *QUIET)
    assert resumed.returncode == 0, resumed.stderr
    (again,) = [
        r
        for r in all_runs(isolated_mlflow)
        if r.data.tags.get("twrl.resumed_from") == diverged.info.run_id
        or (r.info.run_id == diverged.info.run_id and r.info.status == "FINISHED")
    ]
    assert again.data.metrics["env_steps"] >= 3000


def test_kill_9_of_a_population_leaves_every_member_lost_and_each_resumes_to_its_budget(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    """``trial.seeds=3`` (the short form: this config, 3 seeds, one population), killed with
    -9 after every member has a checkpoint and episodes past it: every member is found lost;
    one resumes alone, the other two together as one population (``-m resume=<a>,<b>
    hydra/launcher=population``), each to the exact budget with one metric timeline."""
    open_client(isolated_mlflow)  # the store exists: polling it below never races its creation
    proc = start(
        tmp_path,
        "update=ppo",
        "trial.seeds=3",
        "train.max_env_steps=50000000",
        "monitor.mlflow.flush_every_s=0.2",
        "monitor.checkpoint.every_steps=6000",
        "eval.every_steps=20000",
        "eval.episodes=2",
        *QUIET,
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)

    def past_checkpoints() -> bool:
        found = all_runs(isolated_mlflow)
        if len(found) < 3:
            return False
        for run in found:
            step = checkpoint_step(isolated_mlflow, run.info.run_id)
            history = client.get_metric_history(run.info.run_id, "episode/return")
            if not step or max((m.step for m in history), default=0) < step + 2000:
                return False
        return True

    wait_for(past_checkpoints, what="checkpoints of every member", proc=proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    members = sorted(all_runs(isolated_mlflow), key=lambda r: r.data.params["seed"])
    assert [r.data.params["seed"] for r in members] == ["0", "1", "2"]
    budget = max(checkpoint_step(isolated_mlflow, r.info.run_id) for r in members) + 5000
    alone = train(tmp_path, f"resume={members[0].info.run_id}", f"train.max_env_steps={budget}",
                  *QUIET)  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    ids = ",".join(r.info.run_id for r in members[1:])
    together = train(tmp_path, "-m", f"resume={ids}", POPULATION,
                     f"train.max_env_steps={budget}", *QUIET)  # fmt: skip
    assert together.returncode == 0, together.stderr
    assert "Launching 2 jobs as one population" in together.stdout + together.stderr
    finals: list[str] = []  # each member's continuation
    for run in members:
        assert "lost" in client.get_run(run.info.run_id).data.tags["twrl.end_reason"]
        seed = run.data.params["seed"]
        (final,) = [r for r in all_runs(isolated_mlflow) if r.data.params.get("seed") == seed]
        assert final.info.status == "FINISHED"
        assert budget <= final.data.metrics["env_steps"] < budget + 16
        assert_one_timeline(client, final)
        finals.append(final.info.run_id)
    # rerun= jobs are grouped by their logged config too: two new runs, one population
    ids = ",".join(finals[1:])
    again = train(tmp_path, "-m", f"rerun={ids}", POPULATION, "train.max_env_steps=2000", *QUIET)
    assert again.returncode == 0, again.stderr
    assert "Launching 2 jobs as one population" in again.stdout + again.stderr
    before = {*finals, *(r.info.run_id for r in members)}
    reruns = [
        r
        for r in all_runs(isolated_mlflow)
        if r.info.run_id not in before and "seed" in r.data.params
    ]  # the new runs, not the sweep's parent
    # (each rerun trains its logged config's trial.seeds=3 seeds, as a plain rerun= does)
    assert {r.data.tags["rerun_of"] for r in reruns} == set(finals[1:])
    assert all(r.info.status == "FINISHED" for r in reruns)


def test_ctrl_c_of_a_population_marks_every_member_killed(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    open_client(isolated_mlflow)
    proc = start(
        tmp_path,
        "update=ppo",
        "trial.seeds=2",
        "train.max_env_steps=50000000",
        "monitor.checkpoint.every_steps=5000",
        *QUIET,
    )
    wait_for(
        lambda: (
            len(
                [
                    r
                    for r in all_runs(isolated_mlflow)
                    if checkpoint_step(isolated_mlflow, r.info.run_id)
                ]
            )
            == 2
        ),
        what="a checkpoint of each member",
        proc=proc,
    )
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    runs = all_runs(isolated_mlflow)
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]
    assert all(r.data.tags["twrl.end_reason"] == "interrupted" for r in runs)


@pytest.mark.parametrize(("seeds", "n_trials", "n_jobs"), [(1, 10, 4), (2, 8, 2)])
def test_an_optuna_population_sweep_refills_pruned_slots_to_exactly_n_trials(
    tmp_path: Path, isolated_mlflow: str, seeds: int, n_trials: int, n_jobs: int
) -> None:
    """The shipped population sweep, smaller: 10 trials through a population of 4 in one
    process; every slot whose trial is pruned or done takes the next asked trial, until the
    study holds exactly 10 (some pruned), none repeating another's parameters, each its own
    run under the sweep's parent. With ``seeds_per_trial=2`` a trial is two members: the
    study hears the mean over them at each evaluation step (within the budget, not one
    budget per seed), a pruned trial stops both, a complete one's value is their mean."""
    import optuna

    from hydra_plugins.twrl_optuna_sweeper._trial import PROCESS_ATTR, open_storage

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = train(
        tmp_path,
        "-m",
        "+sweep=population_cartpole_ppo",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.experiment_dir={tmp_path / 'experiment'}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.seeds_per_trial={seeds}",
        "hydra.sweeper.sampler.n_startup_trials=4",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.pruner.n_warmup_steps=4000",
        "train.max_env_steps=20000",
        "eval.every_steps=4000",
        "eval.episodes=3",
    )
    assert result.returncode == 0, result.stderr
    logs = result.stdout + result.stderr
    expected = f"Launching {n_jobs} jobs as one population, refilled as they end"
    assert logs.count(expected) == 1, logs
    study = optuna.load_study(study_name="population_cartpole_ppo", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert len(trials) == n_trials
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == n_trials
    assert len({t.user_attrs[PROCESS_ATTR] for t in trials}) == 1  # one process trained them all
    runs = [r for r in all_runs(isolated_mlflow) if "mlflow.parentRunId" in r.data.tags]
    numbers = sorted(int(r.data.tags["optuna.trial"]) for r in runs)
    assert numbers == sorted(list(range(n_trials)) * seeds)
    stopped_early = 0
    for run in runs:
        assert run.info.status == "FINISHED"
        (trial,) = [t for t in trials if t.number == int(run.data.tags["optuna.trial"])]
        assert float(run.data.params["update.lr"]) == trial.params["update.lr"]
        if trial.state == optuna.trial.TrialState.PRUNED:  # at an evaluation, the last one too
            assert run.data.tags["stopped"] == "pruned"
            stopped_early += run.data.metrics["env_steps"] < 20000
        else:
            assert run.data.metrics["env_steps"] >= 20000
    assert stopped_early >= 1  # a slot freed before the budget, and refilled
    for trial in trials:
        assert trial.intermediate_values
        assert max(trial.intermediate_values) <= 20000  # nominal steps of one budget
        if trial.state == optuna.trial.TrialState.COMPLETE:
            own = [r for r in runs if int(r.data.tags["optuna.trial"]) == trial.number]
            mean = sum(r.data.metrics["objective"] for r in own) / seeds
            assert trial.value == pytest.approx(mean, rel=1e-6)
