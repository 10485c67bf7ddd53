"""MinAtar (the `minatar` extra) from pixels with model=cnn: each game builds, trains a few
hundred steps with DQN and PPO, saves its agent and a video, and evaluates from the record; PPO
learns Breakout within a CI budget; a machine without MinAtar is told in one sentence how to get
it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.integration.families import evaluates_from_its_record, refused_without
from twrl_exp.train import run

GAMES = {
    "minatar_asterix": "MinAtar/Asterix-v1",
    "minatar_breakout": "MinAtar/Breakout-v1",
    "minatar_freeway": "MinAtar/Freeway-v1",
    "minatar_seaquest": "MinAtar/Seaquest-v1",
    "minatar_space_invaders": "MinAtar/SpaceInvaders-v1",
}


def _only_run(client: MlflowClient, env_id: str):
    (found,) = client.search_runs([client.get_experiment_by_name(env_id).experiment_id])
    return found


@pytest.mark.parametrize(("option", "env_id"), list(GAMES.items()))
def test_each_minatar_game_trains_from_pixels_saves_films_and_evaluates(
    make_cfg, isolated_mlflow: str, tmp_path: Path, option: str, env_id: str
) -> None:
    rule = "dqn" if option in {"minatar_breakout", "minatar_seaquest"} else "ppo"
    settings = (
        ["update.learning_starts=100", "update.batch_size=16", "update.buffer_size=1000"]
        if rule == "dqn"
        else ["env.num_envs=4", "update.n_steps=32", "update.num_minibatches=2"]
    )
    run(
        make_cfg(
            f"env={option}",
            f"update={rule}",
            *settings,
            "train.max_env_steps=300",
            "eval.every_steps=null",
            "eval.episodes=1",
            "monitor.console=false",
            "monitor.video.max_frames=50",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    found = _only_run(client, env_id)
    assert found.info.status == "FINISHED"
    assert found.data.params["model.name"] == "cnn"  # the env brings model=cnn
    assert found.data.params["model.arch"] == "minatar"  # the preset's (auto picks it too)
    assert found.data.metrics["env_steps"] >= 300
    evaluates_from_its_record(client, found.info.run_id, tmp_path, episodes=2)
    # the logged MLflow model takes the env's own (boolean) observations
    import gymnasium as gym
    import mlflow

    (output,) = client.get_run(found.info.run_id).outputs.model_outputs
    model = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
    obs, _ = gym.make(env_id).reset(seed=0)
    actions = model.predict(np.stack([obs, obs]))
    assert actions.shape == (2,)


@pytest.mark.slow
def test_ppo_learns_minatar_breakout_from_pixels(make_cfg, isolated_mlflow: str) -> None:
    """The PPO preset (16 envs x 128 steps, MinAtar's network) on Breakout for 50k env steps
    (about 15 s): the untrained network's greedy policy scores 0 to 0.7 a game and a random
    one 0.43 (measured over 20 games, 2 seeds); after 50k steps greedy play scores at least 2,
    over three times either (measured: 2.5 and 2.8 for seeds 1 and 2, 3 to 6 from 20k steps
    on with the full budget)."""
    run(
        make_cfg(
            "env=minatar_breakout",
            "update=ppo",
            "seed=0",
            "train.max_env_steps=50000",
            "eval.every_steps=10000",
            "eval.episodes=20",
            "monitor.console=false",
            "monitor.video.enabled=false",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    found = _only_run(client, "MinAtar/Breakout-v1")
    evals = [m.value for m in client.get_metric_history(found.info.run_id, "eval/mean_return")]
    assert found.data.metrics["final_eval_mean_return"] >= 2.0, evals
    assert found.data.metrics["final_mean_return"] >= 1.5  # the sampled policy learned too


def test_a_machine_without_minatar_is_told_how_to_get_it(tmp_path: Path) -> None:
    """The `minatar` package missing: one sentence naming the env, the reason and the extra,
    exit 2, no run left behind."""
    refused_without(
        "minatar", "minatar", "MinAtar/Breakout-v1", tmp_path, "env=minatar_breakout", "update=dqn"
    )
