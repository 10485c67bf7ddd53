"""A run on EnvPool's envs (env.backend=envpool) is recorded, evaluated and filmed as any other:
its evaluations step EnvPool too, its video is Gymnasium's render of the same id."""

from __future__ import annotations

import importlib.util

import pytest
from mlflow import MlflowClient

from twrl_exp.train import run

# Not pytest.importorskip: importing EnvPool sets MPLBACKEND=Agg in this process, which every
# Jupyter kernel a later test starts would inherit; twrl_exp.env.pool imports it guarded.
if importlib.util.find_spec("envpool") is None:
    pytest.skip(
        "EnvPool is not installed (pip install 'twrl-exp[envpool]')", allow_module_level=True
    )


def test_a_run_on_envpool_trains_and_is_recorded(make_cfg, isolated_mlflow: str) -> None:
    run(
        make_cfg(
            "env.backend=envpool",
            "train.max_env_steps=4000",
            "eval.every_steps=2000",
            "eval.episodes=4",
            "monitor.console=false",
            "monitor.video.max_frames=50",
        )
    )
    client = MlflowClient(tracking_uri=isolated_mlflow)
    (found,) = client.search_runs([client.get_experiment_by_name("CartPole-v1").experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["env.backend"] == "envpool"
    assert found.data.metrics["env_steps"] >= 4000
    assert found.data.metrics["episodes"] > 10
    assert len(client.get_metric_history(found.info.run_id, "eval/mean_return")) >= 2
    names = {a.path for a in client.list_artifacts(found.info.run_id, "videos")}
    assert "videos/final.mp4" in names
