"""gSDE runs end to end: a PPO run with state-dependent exploration trains, saves its noise with
its checkpoint, evaluates from the record and resumes; PPO with gSDE (the zoo's preset) reaches
the flag of MountainCarContinuous, where exploration is the whole problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.test_train import artifacts
from twrl_exp import serialization
from twrl_exp.evaluate import EvaluateConfig, evaluate
from twrl_exp.train import run


def test_a_gsde_run_trains_saves_its_noise_evaluates_and_resumes(
    make_cfg, train_cli, isolated_mlflow: str, tmp_path
) -> None:
    common = [
        "env=pendulum",
        "update=ppo",
        "seed=3",
        "update.n_steps=64",
        "update.num_minibatches=4",
        "eval.every_steps=null",
        "eval.episodes=2",
        "monitor.video.enabled=false",
    ]
    made = train_cli(*common, "train.max_env_steps=1024")
    assert made.returncode == 0, made.stderr
    assert "preset: tuned/pendulum-mlp-normal-ppo.yaml" in made.stdout  # the zoo's gSDE preset
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs([client.get_experiment_by_name("Pendulum-v1").experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["policy.use_sde"] == "True"
    assert found.data.params["policy.sde_sample_freq"] == "4"
    assert "update/policy/sde_std" in found.data.metrics  # its noise scale, as it learns
    checkpoint = json.loads(found.data.tags["twrl.checkpoint"])
    assert checkpoint["path"] in artifacts(client, found.info.run_id)
    local = client.download_artifacts(found.info.run_id, checkpoint["path"], str(tmp_path))
    noise = serialization.load(Path(local))["agent"]["policy"]["sde._extra_state"]
    assert noise["weights"].shape == (4, 64, 1)  # one matrix per env: [envs, latent, actions]
    result = evaluate(EvaluateConfig(run_id=found.info.run_id, episodes=2, log=False))
    assert len(result.returns) == 2
    resumed = train_cli(f"resume={found.info.run_id}", "train.max_env_steps=2048")
    assert resumed.returncode == 0, resumed.stderr
    (again,) = client.search_runs(
        [client.get_experiment_by_name("Pendulum-v1").experiment_id],
        f"tags.`twrl.resumed_from` = '{found.info.run_id}'",
    )
    assert again.info.status == "FINISHED"
    assert again.data.params["policy.use_sde"] == "True"
    assert again.data.metrics["env_steps"] >= 2048


@pytest.mark.slow
def test_ppo_with_gsde_reaches_the_flag_of_mountaincar_continuous(
    make_cfg, isolated_mlflow: str
) -> None:
    """The zoo's PPO preset for MountainCarContinuous-v0 (gSDE, one env x 8 steps, torch's
    default init): a greedy evaluation of 90 (the env's threshold: the car reaches the flag)
    within 4k env steps (an untrained policy barely moves: about 0). Measured with these
    settings (evaluations at 1k-4k): seed 0 scores 98.0 at 1k, seed 2 88.1 at 3k, seed 1 stays
    near 0; over the preset's 20k steps every seed of five reaches it (RESULTS-zoo.md). This
    proves the preset learns the task, not that gSDE is what makes it: with
    policy.use_sde=false seed 0 reaches it too (98.4 at 3k, since PPO's first decision of each
    rollout is made after the update); RESULTS-zoo.md has both over five seeds."""
    run(
        make_cfg(
            "env=mountaincar_continuous",
            "update=ppo",
            "seed=0",
            "train.max_env_steps=4000",
            "eval.every_steps=1000",
            "eval.episodes=3",
            "monitor.console=false",
            "monitor.video.enabled=false",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs(
        [client.get_experiment_by_name("MountainCarContinuous-v0").experiment_id]
    )
    evals = [m.value for m in client.get_metric_history(found.info.run_id, "eval/mean_return")]
    assert max(evals) >= 90, evals  # the flag
