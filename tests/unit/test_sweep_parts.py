"""Search-space parsing, objectives and trial counting: the sweeper's pure parts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hydra_plugins.twrl_optuna_sweeper import _search_space as search_space
from hydra_plugins.twrl_optuna_sweeper._sweeper import counted
from twrl_exp.errors import ConfigError
from twrl_exp.objectives import objective_value
from twrl_exp.runner import History


def test_sweep_syntax_becomes_optuna_distributions() -> None:
    space, fixed = search_space.parse(
        {
            "update.lr": "tag(log, interval(1e-4, 1e-1))",
            "update.entropy_coef": "interval(0.0, 0.01)",
            "model.num_tilings": "choice(4, 8, 16)",
            "model.hidden_sizes": "choice([32], [64,64])",
            "update.steps_per_batch": "range(1000, 5000, 1000)",
        },
        [
            "+sweep=x",
            "seed=3",
            "policy.epsilon=interval(0, 1)",
            "model.tiles=tag(int, interval(2, 9))",
        ],
    )
    assert space["update.lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["update.entropy_coef"] == FloatDistribution(0.0, 0.01)
    assert space["model.num_tilings"] == CategoricalDistribution([4, 8, 16])
    assert space["model.hidden_sizes"] == CategoricalDistribution(["[32]", "[64,64]"])
    assert space["update.steps_per_batch"] == IntDistribution(1000, 4000, step=1000)
    assert space["policy.epsilon"] == FloatDistribution(0.0, 1.0)
    assert space["model.tiles"] == IntDistribution(2, 9)
    assert fixed == ["+sweep=x", "seed=3"]


def test_sampled_values_become_overrides() -> None:
    assert search_space.override_text("model.hidden_sizes", "[64,64]") == (
        "model.hidden_sizes=[64,64]"
    )
    assert search_space.override_text("update.lr", 0.1) == "update.lr=0.1"
    assert search_space.override_text("update.baseline", "none") == "update.baseline=none"


def test_grid_needs_finite_choices() -> None:
    space, _ = search_space.parse({"a": "choice(1, 2)", "b": "range(0, 3)"}, [])
    assert search_space.grid(space) == {"a": [1, 2], "b": [0, 1, 2]}
    space, _ = search_space.parse({"c": "interval(0.0, 1.0)"}, [])
    with pytest.raises(ConfigError, match="c is a continuous interval"):
        search_space.grid(space)


def test_trials_counted_toward_n_trials() -> None:
    def make(state: TrialState, **attrs) -> object:
        value = 1.0 if state == TrialState.COMPLETE else None
        return create_trial(state=state, value=value, user_attrs=attrs)

    trials = [
        make(TrialState.COMPLETE),
        make(TrialState.PRUNED),
        make(TrialState.FAIL, error="ValueError: boom"),  # a real failure counts
        make(TrialState.FAIL, interrupted=True),  # an interrupted trial does not
        # An error recorded as its process was torn down, then found lost: not its own result.
        make(TrialState.FAIL, error="SystemExit: 1", lost=True),
        make(TrialState.RUNNING),
    ]
    assert counted(trials, live_running=False) == 3
    assert counted(trials, live_running=True) == 4


def test_objectives_from_a_history() -> None:
    h = History(
        env_steps=400,
        returns=[10.0, 20.0, 30.0],
        trailing=[10.0, 15.0, 20.0],
        end_steps=[100, 200, 300],
        eval_means=[5.0, 25.0],
    )
    assert objective_value("best_mean_return", h, window=2, budget_steps=400) == 20.0
    assert objective_value("final_eval_return", h, window=2, budget_steps=400) == 25.0
    # trailing mean held from each episode end to the next, averaged over steps 100..400
    auc = (10 * 100 + 15 * 100 + 20 * 100) / 300
    assert objective_value("auc", h, window=2, budget_steps=400) == pytest.approx(auc)
    assert objective_value("neg_steps_to_solve", h, window=2, budget_steps=1000) == -1000
    h.solved_step = 250
    assert objective_value("neg_steps_to_solve", h, window=2, budget_steps=1000) == -250
    assert math.isnan(objective_value("final_eval_return", History(), window=2, budget_steps=None))


def test_a_job_prunes_with_the_sweepers_pruner(tmp_path) -> None:
    """Optuna stores no pruner with a study: the job must rebuild the sweeper's own."""
    import optuna

    from hydra_plugins.twrl_optuna_sweeper._trial import load_trial

    url = f"sqlite:///{tmp_path / 's.db'}"
    for name, expected in (
        ("none", optuna.pruners.NopPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
    ):
        study = optuna.create_study(study_name=name, storage=url)
        study.set_user_attr(
            "pruner",
            {
                "name": name,
                "n_startup_trials": 1,
                "n_warmup_steps": 0,
                "interval_steps": 1,
                "reduction_factor": 3,
                "min_resource": None,
                "max_resource": None,
            },
        )
        trial = study.ask()
        rebuilt = load_trial(name, url, trial.number, heartbeat_interval=None)
        assert isinstance(rebuilt.study.pruner, expected)


def test_a_job_keeps_its_trial_alive_and_a_dead_job_goes_stale(tmp_path) -> None:
    """The heartbeat is really written (through the storage wrapper a study uses): a live job's
    trial survives fail_stale_trials, one whose heartbeat stopped is failed and not counted."""
    import time

    import optuna
    from optuna.trial import TrialState

    from hydra_plugins.twrl_optuna_sweeper._sweeper import counted
    from hydra_plugins.twrl_optuna_sweeper._trial import TrialJob, open_storage, quiet_optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    with quiet_optuna():
        # Heartbeats are stamped to the second: a grace of 4 s leaves the live job about 2 s
        # of slack on a busy machine; 6.5 s of silence is past it for the dead one.
        storage = open_storage(url, heartbeat_interval=1, grace_period=4)
        study = optuna.create_study(study_name="hb", storage=storage)
        alive, dead = study.ask(), study.ask()
        with TrialJob.load("hb", url, alive.number, 1) as job_alive:
            job_dead = TrialJob.load("hb", url, dead.number, 1).__enter__()
            assert job_dead._heartbeat is not None
            job_dead._heartbeat.stop()  # as if its process had been killed
            time.sleep(6.5)
            optuna.storages.fail_stale_trials(study)
            states = {t.number: t.state for t in study.get_trials()}
            assert states[job_alive.trial.number] == TrialState.RUNNING
            assert states[dead.number] == TrialState.FAIL
            assert counted(study.get_trials(), live_running=True) == 1  # only the live one


def test_a_resumed_sampler_does_not_replay_its_first_proposals() -> None:
    import optuna
    from omegaconf import OmegaConf

    from hydra_plugins.twrl_optuna_sweeper._strategies import make_sampler

    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    cfg = OmegaConf.create({"name": "tpe", "seed": 3, "n_startup_trials": 8})

    def first(offset: int) -> float:
        study = optuna.create_study(sampler=make_sampler(cfg, space, offset=offset))
        return study.ask(space).params["x"]

    assert first(0) == first(0)
    assert first(0) != first(3)


def test_passwords_in_urls_are_hidden() -> None:
    from twrl_exp.store import redact

    text = "trial.storage='postgresql+psycopg://twrl:s3cr%t@db:5432/optuna' http://u:p@h:5000 x"
    assert redact(text) == (
        "trial.storage='postgresql+psycopg://twrl:***@db:5432/optuna' http://u:***@h:5000 x"
    )
    assert redact("sqlite:////a/b.db http://127.0.0.1:5000") == (
        "sqlite:////a/b.db http://127.0.0.1:5000"
    )


def test_the_cluster_preset_comes_last_so_its_launcher_wins() -> None:
    from twrl_exp.train import _with_env_preset

    argv = ["+cluster=local", "+sweep=cartpole_reinforce", "seed=1"]
    assert _with_env_preset(argv) == ["+sweep=cartpole_reinforce", "seed=1", "+cluster=local"]


def test_a_search_space_is_described_for_the_parent_runs_params() -> None:
    describe = search_space.describe
    assert describe(FloatDistribution(1e-5, 5e-2, log=True)) == "log-uniform[1e-05, 0.05]"
    assert describe(FloatDistribution(0.9, 0.999)) == "uniform[0.9, 0.999]"
    assert describe(FloatDistribution(0.0, 1.0, step=0.25)) == "uniform[0.0, 1.0] step 0.25"
    assert describe(IntDistribution(2, 9)) == "int[2, 9]"
    assert describe(IntDistribution(1000, 4000, step=1000)) == "int[1000, 4000] step 1000"
    assert describe(IntDistribution(1, 64, log=True)) == "log-int[1, 64]"
    assert describe(CategoricalDistribution([4, 8, "[64,64]"])) == "choice(4, 8, [64,64])"


def test_a_changed_search_space_keeps_the_first_params_and_warns(caplog) -> None:
    """MLflow params cannot change: a resumed study logs only keys its parent does not hold."""
    from types import SimpleNamespace

    from hydra_plugins.twrl_optuna_sweeper._results import log_search_space

    logged: dict[str, str] = {"update.lr": "uniform[0.0, 1.0]"}
    client = SimpleNamespace(
        get_run=lambda run_id: SimpleNamespace(data=SimpleNamespace(params=dict(logged))),
        log_batch=lambda run_id, params: logged.update({p.key: p.value for p in params}),
    )
    parent = SimpleNamespace(client=client, run_id="r")
    space = {"update.lr": FloatDistribution(0.0, 0.5), "seed": IntDistribution(0, 3)}
    log_search_space(parent, space)  # type: ignore[arg-type]
    assert logged == {"update.lr": "uniform[0.0, 1.0]", "seed": "int[0, 3]"}
    assert "update.lr is now uniform[0.0, 0.5]" in caplog.text


def _best_study() -> object:
    import optuna

    study = optuna.create_study(study_name="portable", direction="maximize")
    space = {"update.lr": FloatDistribution(1e-5, 5e-2, log=True)}
    study.add_trial(create_trial(params={"update.lr": 3e-3}, distributions=space, value=1.0))
    return study


def test_a_saved_experiment_holds_no_machine_path_and_composes_in_another_checkout(
    tmp_path, monkeypatch
) -> None:
    """No ``paths`` (the project's absolute folders); a value inside the project follows the
    checkout as ``${paths.root}/...``; one outside is kept and flagged in the file."""
    import shutil

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hydra_plugins.twrl_optuna_sweeper._results import experiment_yaml
    from twrl_exp.paths import config_dir

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    overrides = ["update.lr=0.003", "seed=4", "+env.kwargs.map=${paths.root}/maps/a.txt"]

    def composed(conf: Path, root: Path, *extra: str):
        monkeypatch.setenv("TWRL_PROJECT_ROOT", str(root))
        with initialize_config_dir(str(conf), version_base="1.3"):
            return compose("config", list(extra), return_hydra_config=True)

    best = composed(config_dir(), here, *overrides, "+env.kwargs.data=/data/b.txt")
    text = experiment_yaml(best, _best_study())  # type: ignore[arg-type]
    assert "paths:" not in text
    assert str(here) not in text
    assert "map: ${paths.root}/maps/a.txt" in text
    assert "# env.kwargs.data is an absolute path outside the project" in text

    shutil.copytree(config_dir(), elsewhere / "conf")
    (elsewhere / "conf" / "experiment" / "portable.yaml").write_text(text)
    again = composed(elsewhere / "conf", elsewhere, "+experiment=portable")
    assert again.paths.root == str(elsewhere)
    assert again.env.kwargs.map == f"{elsewhere}/maps/a.txt"
    best.env.kwargs.map = again.env.kwargs.map  # the one value that follows the checkout
    for key in ("env", "model", "policy", "update", "train", "eval", "seed", "torch_threads"):
        expected, got = best[key], again[key]
        if OmegaConf.is_config(expected):
            expected, got = (OmegaConf.to_container(c, resolve=True) for c in (expected, got))
        assert got == expected, key


def test_optunas_plots_share_one_page_with_plotly_js_once() -> None:
    import optuna

    from hydra_plugins.twrl_optuna_sweeper._results import PLOTS, plots_page

    study = optuna.create_study(study_name="plots", direction="maximize")
    space = {"update.lr": FloatDistribution(1e-5, 5e-2, log=True), "seed": IntDistribution(0, 3)}
    for number, lr in enumerate((1e-4, 1e-3, 1e-2)):
        values = {1000 * (step + 1): lr * step for step in range(3)}
        params = {"update.lr": lr, "seed": number}
        trial = create_trial(
            params=params, distributions=space, value=lr, intermediate_values=values
        )
        study.add_trial(trial)
    page = plots_page(study)
    assert len(page.encode()) < 5 * 2**20
    assert page.count("Plotly.newPlot") == len(PLOTS)  # plotly.js defines no newPlot call ...
    assert page.count("plotly.js v") == 1  # ... and its banner appears once
    for name in PLOTS:
        assert f'<div id="{name}" class="plotly-graph-div"' in page
    for title in ("Optimization History Plot", "Parallel Coordinate Plot", "Slice Plot"):
        assert title in page


def test_a_storage_that_does_not_answer_is_retried_for_its_window_then_said_in_one_sentence():
    """A job's storage is retried while its database does not answer (a restart), for the
    sweep's window, then one sentence (password hidden); a sweep opening a wrong URL is told at
    once. Real connections to a port where nothing listens."""
    import time

    from hydra_plugins.twrl_optuna_sweeper._storage import StorageUnavailable
    from hydra_plugins.twrl_optuna_sweeper._trial import open_storage

    url = "postgresql+psycopg://twrl:s3cret@127.0.0.1:1/optuna"
    start = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        open_storage(url, retry_open=True, window_s=2)
    assert 2 <= time.monotonic() - start < 10
    assert str(caught.value) == (
        "The Optuna storage postgresql+psycopg://twrl:***@127.0.0.1:1/optuna did not answer for "
        "2 s (connection refused); run the same command again once the database answers "
        "(hydra.sweeper.storage_retry_s sets how long a sweep waits for it)."
    )
    start = time.monotonic()
    with pytest.raises(Exception, match="connection failed") as opened:
        open_storage(url, window_s=60)
    assert time.monotonic() - start < 5
    assert not isinstance(opened.value, StorageUnavailable)


def test_trials_stopped_by_infrastructure_do_not_count() -> None:
    """A trial its storage or Ray head abandoned is FAIL ``infrastructure``: not its own result,
    even when its job also recorded the error it died of."""
    lost_head = "The Ray head at 10.0.0.1:6379 was lost (no answer for 10 s)"
    trials = [
        create_trial(state=TrialState.COMPLETE, value=1.0),
        create_trial(state=TrialState.FAIL, user_attrs={"infrastructure": lost_head}),
        create_trial(
            state=TrialState.FAIL,
            user_attrs={"infrastructure": "storage", "error": "StorageInternalError: commit"},
        ),
    ]
    assert counted(trials, live_running=False) == 1


def test_a_trial_of_a_failed_launch_that_no_job_took_up_is_lost(tmp_path) -> None:
    """The launch failed as a whole (no job started): its trials belong to this very sweep,
    which is alive, but no job will run them, so they are lost, not left RUNNING and counted."""
    import optuna

    from hydra_plugins.twrl_optuna_sweeper._sweeper import SWEEP_ATTR, fail_lost_trials
    from hydra_plugins.twrl_optuna_sweeper._trial import open_storage, quiet_optuna
    from twrl_exp import processes

    with quiet_optuna():
        study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
        launched, other = study.ask(), study.ask()
        for trial in (launched, other):
            trial.set_user_attr(SWEEP_ATTR, processes.identity())
        assert fail_lost_trials(study, heartbeats=True, batch=[launched], grace_period=60) == 1
        states = {t.number: t.state for t in study.get_trials()}
        attrs = study.get_trials()[0].user_attrs
    assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING}
    assert attrs["lost"] is True
    assert counted(study.get_trials(), live_running=True) == 1  # only the other, still running


def test_errors_a_job_returns_reach_its_sweep_whole() -> None:
    """A job's error is pickled back to the sweep (Ray, joblib): each of ours must rebuild."""
    import pickle

    from hydra_plugins.twrl_optuna_sweeper._stopping import LaunchFailed
    from hydra_plugins.twrl_optuna_sweeper._storage import StorageUnavailable
    from hydra_plugins.twrl_optuna_sweeper._trial import TrialEnded
    from hydra_plugins.twrl_ray_launcher._head import HeadLost

    for error in (
        StorageUnavailable("postgresql+psycopg://u:pw@db/optuna", 60, "connection refused"),
        TrialEnded(3, "lost"),
        HeadLost("10.0.0.1:6379", 10.2, 2),
        LaunchFailed("The launcher failed 3 times in a row (boom)"),
    ):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error)
        assert str(again) == str(error)
        assert "pw" not in str(again)
