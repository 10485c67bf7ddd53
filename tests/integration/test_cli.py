"""The command line as a user meets it: help, printed config, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient


def test_help_lists_groups_and_options(train_cli) -> None:
    result = train_cli("--help")
    assert result.returncode == 0
    for text in (
        "env: ",
        "cartpole",
        "mountaincar",
        "pendulum",
        "model: ",
        "tilecoding",
        "policy: ",
        "egreedy",
        "update: ",
        "td_lambda",
        "monitor: ",
    ):
        assert text in result.stdout, text


def test_cfg_job_prints_the_composed_config(train_cli) -> None:
    result = train_cli("--cfg", "job", "update.lr=0.003")
    assert result.returncode == 0
    assert "lr: 0.003" in result.stdout
    assert "id: CartPole-v1" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["policy=softmax"], "softmax"),
        (["update.lr=fast"], "update.lr"),
        (["update.lrr=0.1"], "lrr"),
        (["update.lr=-0.01"], "update.lr=-0.01 is invalid"),
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
        (["env=pendulum"], "policy=categorical needs a Discrete action space"),
        (["env.id=NoSuchEnv-v0"], "Unknown env id 'NoSuchEnv-v0'"),
    ],
)
def test_bad_input_gives_one_clear_error_and_leaves_nothing(
    train_cli, tmp_path: Path, isolated_mlflow: str, args, fragment
) -> None:
    result = train_cli(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert not (tmp_path / "outputs").exists()
    client = MlflowClient(tracking_uri=isolated_mlflow)
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())
