"""The command line as a user meets it: help, printed config, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.config.test_defaults import OLD_KEYS
from twrl_exp.build import project_root


def test_help_lists_the_groups_a_user_picks_and_nothing_internal(train_cli) -> None:
    result = train_cli("--help")
    assert result.returncode == 0
    for text in (
        "env=  acrobot, ant, atari_breakout, atari_pong, atari_space_invaders, cartpole",
        "mountaincar",
        "pendulum",
        "model=  cnn, mlp, none, table, tilecoding",
        "policy=  categorical, deterministic, egreedy, greedy, normal, random, tanh_normal",
        "update=  a2c, dqn, none, ppo, reinforce, sac, td3, td_lambda",
        "monitor=  default, none, quiet",
        "+sweep=  cartpole_dqn, cartpole_pareto, cartpole_ppo, cartpole_reinforce",
    ):
        assert text in result.stdout, text
    for internal in ("schema/", "tuned:", "tuned=", "\nsweep:"):
        assert internal not in result.stdout, internal


def test_evaluate_help_is_usage_not_an_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twrl_exp.evaluate", "--help"],
        cwd=project_root(),
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m twrl_exp.evaluate run_id=<id>" in result.stdout
    assert "episodes=100" in result.stdout


def test_cfg_job_prints_the_composed_config(train_cli) -> None:
    result = train_cli("--cfg", "job", "update.lr=0.003")
    assert result.returncode == 0
    assert "lr: 0.003" in result.stdout
    assert "id: CartPole-v1" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["policy=softmax"],
            "policy=softmax is not an option: choose one of categorical, deterministic, egreedy",
        ),
        (
            ["+sweep=nosuch"],
            "+sweep=nosuch is not an option: choose one of cartpole_dqn, cartpole_pareto, "
            "cartpole_ppo",
        ),
        (["update.lr=fast"], "update.lr=fast is invalid: update.lr must be a number"),
        (["update.baseline=foo"], "update.baseline must be one of none, average, value"),
        (["trial.aggregate=median"], "trial.aggregate must be one of mean, iqm, ci_low"),
        (["update.lrr=0.1"], "update.lrr is not a key of update: valid keys are name, gamma"),
        (["+update.lrr=0.1"], "update.lrr is not a key of update (reinforce): valid keys are"),
        (["+model.width=8"], "model.width is not a key of model (mlp): valid keys are"),
        (["update.lr=("], "is not valid override syntax"),
        (["update.lr=-0.01"], "update.lr=-0.01 is invalid"),
        (["update.lr=inf"], "update.lr=inf is invalid: it must be a finite number"),
        (["update.gamma=nan"], "update.gamma=nan is invalid: it must be a finite number"),
        (["eval.every_steps=0"], "eval.every_steps=0 is invalid: it must be > 0 or null"),
        (["monitor.checkpoint.every_steps=0"], "monitor.checkpoint.every_steps=0 is invalid"),
        (["env.max_episode_steps=0"], "env.max_episode_steps=0 is invalid"),
        (["resume=abc", "rerun=def"], "cannot be combined"),
        (
            ["seed=99999999999999999999"],
            "seed=99999999999999999999 is invalid: it must be an integer from 0 to 4294967295.",
        ),
        (["seed=-1"], "seed=-1 is invalid: it must be an integer from 0 to 4294967295."),
        (["rerun=0123abcd"], "rerun=0123abcd names no run"),
        (
            [
                "env=mountaincar",
                "model=tilecoding",
                "policy=egreedy",
                "update=td_lambda",
                "update.lam=1.5",
            ],
            "update.lam=1.5 is invalid",
        ),
        (
            ["env=pendulum", "policy=categorical"],
            "policy=categorical needs a Discrete action space",
        ),
        (["env.id=NoSuchEnv-v0"], "Unknown env id 'NoSuchEnv-v0'"),
        (
            ["update=td_lambda", "model=table", "env=cliffwalking", "update.backend=gpu"],
            "update.backend=gpu is invalid: update.backend must be one of auto, numpy, numba.",
        ),
    ],
)
def test_bad_input_gives_one_clear_error_and_leaves_nothing(
    train_cli, tmp_path: Path, isolated_mlflow: str, args, fragment
) -> None:
    result = train_cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "outputs").exists()
    if (tmp_path / "mlflow.db").exists():  # (creating a store just to look costs seconds)
        client = MlflowClient(tracking_uri=isolated_mlflow)
        assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["update.lr=interval(1,0)"], "is not a valid search space"),
        (["update.lr=tag(log,interval(0,1))"], "is not a valid search space"),
        (["hydra.sweeper.sampler.name=foo"], "hydra.sweeper.sampler.name=foo is unknown"),
        (["hydra.sweeper.pruner.name=foo"], "hydra.sweeper.pruner.name=foo is unknown"),
        (["hydra.sweeper.study_name=../escape"], "hydra.sweeper.study_name=../escape is invalid"),
    ],
)
def test_a_bad_optuna_sweep_is_refused_before_any_study_exists(
    tmp_path: Path, isolated_mlflow: str, args, fragment
) -> None:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    result = subprocess.run(
        [
            sys.executable,
            str(project_root() / "train.py"),
            "-m",
            "hydra/sweeper=twrl_optuna",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study' / 'optuna.db'}",
            "update.lr=interval(0.001,0.01)",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "study").exists()
    assert not (tmp_path / "multirun").exists()
    assert not (tmp_path / "escape.db").exists()


def test_without_numba_backend_numba_is_refused_in_one_sentence_and_auto_runs_numpy(
    tmp_path: Path,
) -> None:
    hidden = tmp_path / "no-numba"
    hidden.mkdir()
    (hidden / "numba.py").write_text("raise ImportError(\"No module named 'numba'\")\n")
    td = ["env=cliffwalking", "model=table", "policy=egreedy", "update=td_lambda"]

    def train(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "train.py", *td, "monitor=none", *args],
            cwd=project_root(),
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), str(project_root())])},
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = train("update.backend=numba", f"hydra.run.dir={tmp_path / 'refused'}")
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "refused").exists()
    assert refused.stderr.strip() == (
        "error: update.backend=numba needs numba, which cannot be imported here (No module named "
        "'numba'): pip install \"twrl-exp[fast]\", or use update.backend=auto or numpy."
    )
    auto = train("train.max_env_steps=300", "eval.final=false", f"hydra.run.dir={tmp_path / 'a'}")
    assert auto.returncode == 0, auto.stderr
    assert not auto.stderr.strip(), auto.stderr


@pytest.mark.parametrize(("override", "sentence"), [OLD_KEYS[0], OLD_KEYS[1], OLD_KEYS[3]])
def test_the_command_line_refuses_an_old_key_with_exit_2(
    train_cli, tmp_path: Path, override: str, sentence: str
) -> None:
    result = train_cli(override)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {sentence}"]
    assert not (tmp_path / "outputs").exists()
