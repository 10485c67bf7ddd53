"""train.py end to end against a temporary MLflow store: records, errors, failures, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from twrl_exp.artifacts import load_agent
from twrl_exp.serialization import sha256
from twrl_exp.train import run

TINY = [
    "train.max_env_steps=6000",
    "eval.every_steps=3000",
    "eval.episodes=4",
    "monitor.console=false",
    "monitor.checkpoint.every_steps=2000",
]


def runs(uri: str, experiment: str = "CartPole-v1"):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_a_run_is_recorded_completely(train_cli, isolated_mlflow: str, tmp_path: Path) -> None:
    result = train_cli(*TINY, "seed=3")
    assert result.returncode == 0, result.stderr
    (found,) = runs(isolated_mlflow)
    client = MlflowClient(tracking_uri=isolated_mlflow)
    assert found.info.status == "FINISHED"
    assert found.info.run_name == "s3 reinforce/categorical/mlp CartPole-v1"
    assert found.data.params["update.lr"] == "0.005"
    assert found.data.params["env.id"] == "CartPole-v1"
    assert found.data.params["torch_threads"] == "1"
    tags = found.data.tags
    assert (tags["policy"], tags["model"], tags["update"]) == ("categorical", "mlp", "reinforce")
    assert len(tags["git_commit"]) >= 7
    metrics = found.data.metrics
    for key in (
        "best_mean_return",
        "final_eval_mean_return",
        "train_time_s",
        "env_steps",
        "episodes",
        "steps_per_s",
        "update/loss",
        "update/policy/entropy",
        "update/grad_norm",
        "update/lr",
        "eval/mean_return",
    ):
        assert key in metrics, key
    history = client.get_metric_history(found.info.run_id, "episode/return")
    assert len(history) == metrics["episodes"]
    steps = [m.step for m in history]
    assert steps == sorted(steps)
    assert steps[-1] <= metrics["env_steps"]
    stored = artifacts(client, found.info.run_id)
    assert {
        "config.yaml",
        "model/agent.pt",
        "model/config.yaml",
        "learning_curve.png",
        "videos/final.mp4",
    } <= stored
    checkpoint = json.loads(tags["twrl.checkpoint"])
    assert checkpoint["path"] in stored
    assert checkpoint["env_steps"] == metrics["env_steps"]
    local = client.download_artifacts(found.info.run_id, checkpoint["path"], str(tmp_path / "dl"))
    assert sha256(Path(local)) == checkpoint["sha256"]
    assert tags["twrl.pid"].startswith(tags["twrl.host"])
    assert float(tags["twrl.heartbeat"]) > 0


def test_the_logged_model_rebuilds_the_trained_agent(make_cfg, isolated_mlflow: str) -> None:
    cfg = make_cfg("train.max_env_steps=3000", "monitor.console=false", "eval.every_steps=null")
    run(cfg)
    (found,) = runs(isolated_mlflow)
    agent, logged = load_agent(found.info.run_id)
    assert logged.env.id == "CartPole-v1"
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    assert agent.act(obs).shape == (5,)
    assert sum(p.abs().sum().item() for p in agent.model.parameters()) > 0


def test_seed_twice_gives_identical_returns(make_cfg, isolated_mlflow: str) -> None:
    for _ in range(2):
        run(
            make_cfg(
                "seed=5",
                "train.max_env_steps=8000",
                "monitor.console=false",
                "monitor.checkpoint.enabled=false",
            )
        )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    first, second = (
        [m.value for m in client.get_metric_history(r.info.run_id, "episode/return")]
        for r in runs(isolated_mlflow)
    )
    assert len(first) > 50
    assert first == second


def test_a_crashing_run_is_marked_failed_and_keeps_its_checkpoint(
    make_cfg, isolated_mlflow: str
) -> None:
    cfg = make_cfg(
        "env.id=tests.envs:twrl_test/Crash-v0",
        "env.num_envs=1",
        "train.max_env_steps=100000",
        "monitor.console=false",
        "monitor.checkpoint.every_steps=500",
        "eval.every_steps=null",
        "eval.final=false",
    )
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        run(cfg, run_dir=None)
    (found,) = runs(isolated_mlflow, "twrl_test/Crash-v0")
    assert found.info.status == "FAILED"
    assert "crashed on purpose" in found.data.tags["twrl.end_reason"]
    client = MlflowClient(tracking_uri=isolated_mlflow)
    assert json.loads(found.data.tags["twrl.checkpoint"])["path"] in artifacts(
        client, found.info.run_id
    )


def test_evaluate_reproduces_the_final_evaluation(
    make_cfg, isolated_mlflow: str, tmp_path: Path
) -> None:
    from twrl_exp.evaluate import EvaluateConfig, evaluate, main

    run(
        make_cfg(
            "train.max_env_steps=30000",
            "monitor.console=false",
            "eval.every_steps=null",
            "eval.episodes=20",
            "monitor.video.enabled=false",
        )
    )
    (found,) = runs(isolated_mlflow)
    logged = found.data.metrics["final_eval_mean_return"]
    video = tmp_path / "eval.mp4"
    result = evaluate(
        EvaluateConfig(
            run_id=found.info.run_id, episodes=40, video=True, video_path=str(video), log=True
        )
    )
    assert len(result.returns) == 40
    noise = 3 * result.std / np.sqrt(20) + 3 * result.std / np.sqrt(40) + 1.0
    assert abs(result.mean - logged) <= noise
    assert video.read_bytes()[4:8] == b"ftyp"  # an mp4 container
    client = MlflowClient(tracking_uri=isolated_mlflow)
    again = client.get_run(found.info.run_id)
    assert again.data.metrics["evaluate/mean_return"] == pytest.approx(result.mean)
    assert "videos/evaluate.mp4" in artifacts(client, found.info.run_id)
    assert main([f"run_id={found.info.run_id}", "episodes=3"]) == 0
    assert main(["run_id=no-such-run"]) == 2
    assert main([f"run_id={found.info.run_id}", "episods=3"]) == 2


def test_rerun_repeats_a_logged_run_exactly(make_cfg, train_cli, isolated_mlflow: str) -> None:
    run(
        make_cfg(
            "seed=7",
            "train.max_env_steps=8000",
            "monitor.console=false",
            "monitor.video.enabled=false",
            "eval.every_steps=null",
        )
    )
    (first,) = runs(isolated_mlflow)
    result = train_cli(f"rerun={first.info.run_id}", "monitor.console=false")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (second,) = [r for r in runs(isolated_mlflow) if r.info.run_id != first.info.run_id]
    assert second.data.tags["rerun_of"] == first.info.run_id
    assert second.data.params["seed"] == "7"
    history = [
        [m.value for m in client.get_metric_history(r.info.run_id, "episode/return")]
        for r in (first, second)
    ]
    assert history[0] == history[1]


def test_resume_and_rerun_take_values_of_the_runs_own_groups(
    make_cfg, train_cli, isolated_mlflow: str
) -> None:
    """update.alpha exists for the logged TD(lambda) run, not for the default update=reinforce:
    it is checked against the run's groups, and so is a bad value; monitor=quiet is taken."""
    td = ["env=mountaincar", "model=tilecoding", "policy=egreedy", "update=td_lambda"]
    run(make_cfg(*td, "train.max_env_steps=2000", "monitor=quiet", "monitor.video.enabled=false"))
    (first,) = runs(isolated_mlflow, "MountainCar-v0")
    old = first.info.run_id
    resumed = train_cli(
        f"resume={old}", "update.alpha=0.2", "train.max_env_steps=4000", "monitor=quiet"
    )
    assert resumed.returncode == 0, resumed.stderr
    (new,) = [r for r in runs(isolated_mlflow, "MountainCar-v0") if r.info.run_id != old]
    assert new.data.params["update.alpha"] == "0.2"
    assert new.data.params["monitor.console"] == "False"
    assert new.data.tags["update"] == "td_lambda"
    for bad, says in (
        ("update.nosuch=1", "Key 'nosuch' not in 'TdLambdaConfig'"),
        ("update.alpha=abc", "could not be converted to Float"),
    ):
        refused = train_cli(f"rerun={new.info.run_id}", bad)
        assert refused.returncode == 2
        assert f"error: {bad} does not apply to rerun={new.info.run_id}" in refused.stderr
        assert says in refused.stderr
        assert "Traceback" not in refused.stderr
    assert len(runs(isolated_mlflow, "MountainCar-v0")) == 2


def test_resume_and_rerun_tell_the_logged_runs_preset(train_cli, isolated_mlflow: str) -> None:
    """A DQN run resumed (or rerun) from a command line that names none of its groups says the
    DQN preset it runs, not the one the defaults (REINFORCE) would pick."""
    dqn = ["update=dqn", "policy=egreedy", "update.learning_starts=500"]
    made = train_cli(*dqn, "train.max_env_steps=1000", "monitor.video.enabled=false")
    assert made.returncode == 0, made.stderr
    assert made.stdout.count("preset: tuned/cartpole-mlp-egreedy-dqn.yaml") == 1
    (first,) = runs(isolated_mlflow)
    for again in (
        [f"resume={first.info.run_id}", "train.max_env_steps=1500"],
        [f"rerun={first.info.run_id}"],
    ):
        result = train_cli(
            *again, "monitor.video.enabled=false", "monitor.checkpoint.enabled=false"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("preset: tuned/cartpole-mlp-egreedy-dqn.yaml") == 1
        assert "reinforce" not in result.stdout.split("preset:")[1].splitlines()[0]
