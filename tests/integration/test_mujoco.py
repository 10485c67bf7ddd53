"""MuJoCo continuous control (Gymnasium's v5 envs, the `mujoco` extra): each env option builds,
trains a few hundred steps, saves its agent and a video, and evaluates from the record; SAC
learns InvertedPendulum-v5; a machine without MuJoCo is told in one sentence how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.families import evaluates_from_its_record, refused_without
from twrl_exp.train import run

ENVS = {
    "inverted_pendulum": "InvertedPendulum-v5",
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}


@pytest.mark.parametrize(("option", "env_id"), list(ENVS.items()))
def test_each_mujoco_env_trains_saves_records_a_video_and_evaluates(
    make_cfg, isolated_mlflow: str, tmp_path: Path, option: str, env_id: str
) -> None:
    rule = "td3" if option == "hopper" else "sac"  # both off-policy rules, over the family
    run(
        make_cfg(
            f"env={option}",
            f"update={rule}",
            "model.hidden_sizes=[32,32]",
            "update.learning_starts=100",
            "update.batch_size=32",
            "train.max_env_steps=300",
            "env.max_episode_steps=100",  # evaluations and videos of 100 steps, not 1,000
            "eval.every_steps=null",
            "eval.episodes=1",
            "monitor.console=false",
            "monitor.video.max_frames=50",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs([client.get_experiment_by_name(env_id).experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["env.id"] == env_id
    assert found.data.metrics["env_steps"] >= 300
    evaluates_from_its_record(client, found.info.run_id, tmp_path, episodes=2)
    assert not (Path.cwd() / "MUJOCO_LOG.TXT").exists()  # MuJoCo's warnings go to logging


@pytest.mark.slow
def test_sac_balances_the_inverted_pendulum(make_cfg, isolated_mlflow: str) -> None:
    """SAC (the preset, with a 64-64 network and lr 1e-3 to learn in fewer steps): a random
    policy keeps the pole up for about 5 steps; within 12k env steps (about 40 s) the greedy
    policy holds it for the whole episode (an evaluation's mean return of 1000; measured:
    seed 0 from 9k steps on; the preset's 256-256 at lr 3e-4 from 13k)."""
    run(
        make_cfg(
            "env=inverted_pendulum",
            "update=sac",
            "seed=0",
            "model.hidden_sizes=[64,64]",
            "update.lr=1e-3",
            "update.q_lr=1e-3",
            "train.max_env_steps=12000",
            "eval.every_steps=2000",
            "eval.episodes=5",
            "monitor.console=false",
            "monitor.video.enabled=false",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs(
        [client.get_experiment_by_name("InvertedPendulum-v5").experiment_id]
    )
    evals = [m.value for m in client.get_metric_history(found.info.run_id, "eval/mean_return")]
    assert evals[0] < 200, evals  # it starts near the random policy ...
    assert max(evals) >= 950, evals  # ... and balances (the env's registered threshold)


def test_a_machine_without_mujoco_is_told_how_to_get_it(tmp_path: Path) -> None:
    """The `mujoco` package missing (an import that fails, as on a machine without the extra):
    one sentence naming the env, the reason and the extra, exit 2, no run left behind."""
    refused_without("mujoco", "mujoco", "Hopper-v5", tmp_path, "env=hopper", "update=sac")


def test_ppo_with_normalisation_keeps_its_statistics_in_the_record(
    make_cfg, isolated_mlflow: str
) -> None:
    """The zoo's PPO preset for Hopper (VecNormalize: env.normalize_obs and _reward): the logged
    agent holds the statistics it trained, and the agent rebuilt from the record acts on them."""
    from twrl_exp.artifacts import load_agent

    run(
        make_cfg(
            "env=hopper",
            "update=ppo",
            "update.n_steps=128",
            "update.num_minibatches=4",
            "train.max_env_steps=512",
            "eval.every_steps=null",
            "eval.episodes=1",
            "monitor.console=false",
            "monitor.video.enabled=false",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs([client.get_experiment_by_name("Hopper-v5").experiment_id])
    assert found.data.params["env.normalize_obs"] == "True"
    agent, _ = load_agent(found.info.run_id, isolated_mlflow)
    assert agent.normalizer is not None
    assert agent.normalizer.obs_rms.count > 500  # the trained statistics, not fresh ones
    assert agent.normalizer.ret_rms.count > 500
