"""Atari from pixels (the `atari` extra, ale-py): a game trains a few hundred steps with PPO
and with DQN on the standard preprocessing and the Nature CNN, records a video of the game's
screen, saves its agent and evaluates whole games from the record."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.families import evaluates_from_its_record
from twrl_exp.train import run


@pytest.mark.parametrize(
    ("option", "env_id", "rule", "settings"),
    [
        (
            "atari_breakout",
            "BreakoutNoFrameskip-v4",
            "ppo",
            ["env.num_envs=2", "update.n_steps=64"],
        ),
        (
            "atari_pong",
            "PongNoFrameskip-v4",
            "dqn",
            ["update.learning_starts=100", "update.buffer_size=1000", "update.batch_size=8"],
        ),
    ],
)
def test_an_atari_game_trains_from_pixels_films_saves_and_evaluates(
    make_cfg,
    isolated_mlflow: str,
    tmp_path: Path,
    option: str,
    env_id: str,
    rule: str,
    settings: list[str],
) -> None:
    run(
        make_cfg(
            f"env={option}",
            f"update={rule}",
            *settings,
            "train.max_env_steps=256",
            "eval.every_steps=null",
            "eval.episodes=1",
            "monitor.console=false",
            "monitor.video.max_frames=60",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs([client.get_experiment_by_name(env_id).experiment_id])
    assert found.info.status == "FINISHED"
    params = found.data.params
    assert (params["model.name"], params["model.arch"], params["env.preprocess"]) == (
        "cnn",
        "nature",
        "atari",
    )
    result = evaluates_from_its_record(client, found.info.run_id, tmp_path, episodes=1)
    if env_id.startswith("Pong"):  # a whole game: one side reaches 21 (raw scores, unclipped)
        assert -21 <= result.returns[0] <= 21
        assert result.returns[0] != 0
