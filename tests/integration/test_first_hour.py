"""A newcomer's first hour: where the run went, progress in a log, the agent as an MLflow
model, system metrics, custom env ids."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from twrl_exp.build import project_root

TRAIN = str(project_root() / "train.py")


def only_run(uri: str, experiment: str = "CartPole-v1"):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return client, exp, run


def test_a_run_ends_saying_where_it_went(train_cli, isolated_mlflow: str) -> None:
    result = train_cli("train.max_env_steps=3000", "eval.every_steps=null")
    assert result.returncode == 0, result.stderr
    client, exp, run = only_run(isolated_mlflow)
    out = result.stdout
    assert "preset: tuned/cartpole-mlp-categorical-reinforce.yaml" in out
    assert f"FINISHED: run {run.info.run_id}" in out
    link = (
        f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}"
        "/model-metrics?workflowType=machine_learning"
    )
    assert link in out
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    for label, name in (("video", "final.mp4"), ("curve", "learning_curve.png")):
        path = Path(re.search(rf"^  {label} +(\S+)$", out, re.M).group(1))
        assert path.name == name
        assert path.is_file()
    assert "... recording a video of the final policy" in out
    assert f"python train.py resume={run.info.run_id}" in out
    # The README's sample of these lines has the same rows in the same order.
    sample = (project_root() / "README.md").read_text().split("**Where did my run go?**")[1]
    sample = sample.split("```\n", 2)[1]
    labels = re.findall(r"^  (\w+) ", sample, re.M)
    block = out[out.index("FINISHED: run") :]
    assert re.findall(r"^  (\w+) ", block, re.M) == labels
    assert sample.splitlines()[0].split()[3:] == block.splitlines()[0].split()[3:]
    readme = client.download_artifacts(run.info.run_id, "model/README.md")
    assert "twrl_exp.artifacts.load_agent(run_id)" in Path(readme).read_text()


def test_the_agent_is_an_mlflow_model_that_acts(make_cfg, isolated_mlflow: str) -> None:
    from twrl_exp.train import run as train_run

    train_run(make_cfg("train.max_env_steps=3000", "monitor.console=false", "eval.final=false"))
    # logging the model leaves MLflow's global tracking URI as it found it
    assert os.environ["MLFLOW_TRACKING_URI"] == isolated_mlflow
    assert mlflow.tracking._tracking_service.utils._tracking_uri is None
    client, exp, run = only_run(isolated_mlflow)
    (output,) = run.outputs.model_outputs  # the run page lists it under "Logged models"
    model = client.get_logged_model(output.model_id)
    assert model.name == "s0-reinforce-categorical-mlp-CartPole-v1"  # the run's name
    assert model.source_run_id == run.info.run_id
    # Its params are the agent's (no seed, no bookkeeping); its metrics the run's summary.
    assert model.params["update.lr"] == run.data.params["update.lr"]
    assert "seed" not in model.params
    assert not any(k.startswith(("monitor.", "paths.")) for k in model.params)
    linked = {m.key: m.value for m in model.metrics}
    assert linked["best_mean_return"] == run.data.metrics["best_mean_return"]
    assert "final_mean_return" in linked
    history = client.get_metric_history(run.info.run_id, "best_mean_return")
    assert len(history) == 1  # linking the summary to the model does not repeat the run's rows
    assert model.experiment_id == exp.experiment_id  # listed in the experiment's Models tab
    assert model.status.name == "READY"
    agent = mlflow.pyfunc.load_model(f"models:/{output.model_id}")  # $MLFLOW_TRACKING_URI
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    actions = agent.predict(obs)
    assert actions.shape == (6,)
    assert set(np.unique(actions)) <= {0, 1}


@pytest.mark.parametrize("interval", ["1", None])
def test_system_metrics_are_recorded(
    train_cli, isolated_mlflow: str, monkeypatch, interval: str | None
) -> None:
    """With MLflow's sampling interval, and with the default 10 s for a run that ends before it
    (60k CartPole steps take about a second): a run that ended before the sampler's first interval
    still gets one sample (it used to get none, so this test's verdict hung on the machine's
    speed)."""
    if interval is not None:
        monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", interval)
    else:
        monkeypatch.delenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", raising=False)
    result = train_cli("train.max_env_steps=60000", "monitor.video.enabled=false")
    assert result.returncode == 0, result.stderr
    _, _, run = only_run(isolated_mlflow)
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)
    assert any(k.startswith("system/system_memory_usage") for k in run.data.metrics)


def test_progress_reaches_a_log_file_while_training(tmp_path: Path, isolated_mlflow: str) -> None:
    log = tmp_path / "log.txt"
    with open(log, "w") as handle:  # python train.py > log.txt
        proc = subprocess.Popen(
            [sys.executable, TRAIN, "train.max_env_steps=50000000", "monitor.progress_every_s=1"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(project_root())},
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
        )
    deadline = time.monotonic() + 240
    lines: list[str] = []
    while time.monotonic() < deadline and len(lines) < 3:
        lines = [line for line in log.read_text().splitlines() if "% " in line and "eta" in line]
        time.sleep(0.5)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert still_running
    assert len(lines) >= 3, log.read_text()
    assert "\x1b[" not in log.read_text()


def test_a_custom_env_id_gets_generic_defaults_not_cartpoles(
    train_cli, isolated_mlflow: str
) -> None:
    result = train_cli(
        "env.id=tests.envs:twrl_test/Chain-v0",
        "model=table",
        "policy=egreedy",
        "update=td_lambda",
        "train.max_env_steps=2000",
        "monitor.video.enabled=false",
    )
    assert result.returncode == 0, result.stderr
    assert "preset: none for custom-table-egreedy-td_lambda" in result.stdout
    _, _, run = only_run(isolated_mlflow, "twrl_test/Chain-v0")
    assert run.data.params["env.num_envs"] == "8"  # not CartPole's 16
    assert run.data.tags["twrl.choice.env"] == "custom"


def test_runs_of_one_agent_share_an_agent_tag_across_seeds(make_cfg, isolated_mlflow: str) -> None:
    """MLflow's Group by: runs that differ only in seed (and monitoring) form one group; a
    different learning rate or budget is another agent."""
    from twrl_exp.train import run as train_run

    quick = ["train.max_env_steps=600", "monitor=quiet", "eval.final=false"]
    quick += ["monitor.video.enabled=false", "monitor.mlflow.log_model=false"]
    for extra in (["seed=0"], ["seed=1", "monitor.curve=false"], ["seed=0", "update.lr=0.02"]):
        train_run(make_cfg(*quick, *extra))
    train_run(make_cfg(*[q.replace("600", "800") for q in quick]))
    client = MlflowClient(tracking_uri=isolated_mlflow)
    exp = client.get_experiment_by_name("CartPole-v1")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    tags = [r.data.tags["agent"] for r in runs]
    assert tags[0] == tags[1]
    assert len({tags[0], tags[2], tags[3]}) == 3
    assert tags[0].startswith("reinforce/categorical/mlp ")
