"""Observers as configuration, end to end: ``+monitor/observers=tensorboard`` writes what MLflow
records, read back from its event files; a rerun keeps it; an observer in a user's own project
is one file and one YAML; bad observers are refused in one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from twrl_exp.build import project_root

TINY = [
    "train.max_env_steps=3000",
    "eval.every_steps=1500",
    "eval.episodes=2",
    "monitor.console=false",
    "monitor.checkpoint.enabled=false",
    "monitor.mlflow.log_model=false",
    "monitor.mlflow.system_metrics=false",
]


def train(*args: str, cwd: Path | None = None, project: Path | None = None):
    """``python train.py ARGS`` from the checkout, or ``twrl-train ARGS`` in ``project``."""
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    if project is not None:
        env["TWRL_PROJECT_ROOT"] = str(project)
        command = [str(Path(sys.executable).parent / "twrl-train")]
    else:
        command = [sys.executable, "train.py"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd or project or project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def only_run(uri: str, name: str = "CartPole-v1"):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    return client, runs


def events_in(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_holds_what_mlflow_records_and_a_rerun_keeps_it(
    isolated_mlflow: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    trained = train(
        "+monitor/observers=tensorboard",
        *TINY,
        "monitor.video.every_evals=1",
        "monitor.video.max_frames=40",
        f"hydra.run.dir={out}",
    )
    assert trained.returncode == 0, trained.stderr
    client, (run,) = only_run(isolated_mlflow)
    events = events_in(out / "tensorboard")
    for key in ("episode/return", "episode/length", "eval/mean_return", "update/loss"):
        logged = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        shown = sorted((e.step, e.value) for e in events.Scalars(key))
        assert [step for step, _ in shown] == [step for step, _ in sorted(logged)], key
        assert [v for _, v in shown] == pytest.approx([v for _, v in sorted(logged)], rel=1e-6)
    assert len(events.Scalars("episode/return")) == int(run.data.metrics["episodes"])
    end = int(run.data.metrics["env_steps"])
    evaluated = [m.step for m in client.get_metric_history(run.info.run_id, "eval/mean_return")]
    assert len(evaluated) == 2
    assert evaluated[-1] == end
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    )
    assert start.session_start_info.hparams["update.lr"].number_value == pytest.approx(0.005)
    assert start.session_start_info.hparams["env.id"].string_value == "CartPole-v1"
    (final,) = events.Images("video/final")
    assert final.step == end
    assert final.encoded_image_string.startswith(b"GIF8")
    assert [i.step for i in events.Images("video/eval")] == evaluated

    again = train(
        f"rerun={run.info.run_id}",
        "train.max_env_steps=1000",
        "monitor.video.enabled=false",
        f"hydra.run.dir={tmp_path / 'rerun'}",
    )
    assert again.returncode == 0, again.stderr
    rerun_events = events_in(tmp_path / "rerun" / "tensorboard")  # on, as the run it reran
    assert rerun_events.Scalars("episode/return")
    assert rerun_events.Scalars("eval/mean_return")[-1].step >= 1000  # its final evaluation


OBSERVER = '''
import json
from twrl_exp.runner import MonitorBase


class EpisodeCounter(MonitorBase):
    """Counts episodes and writes what it saw to <run folder>/<file> at the end."""

    def __init__(self, *, run, file):
        self.path = run.folder / file
        self.seen = {"name": run.name, "lr": run.params["update.lr"], "episodes": 0}

    def episodes(self, runner, first):
        self.seen["episodes"] += runner.history.episodes - first

    def finish(self, runner, status):
        self.seen["status"] = status
        self.path.write_text(json.dumps(self.seen))
'''


def user_project(root: Path) -> Path:
    (root / "conf" / "monitor" / "observers").mkdir(parents=True)
    (root / "my_observers.py").write_text(OBSERVER)
    (root / "conf" / "monitor" / "observers" / "counter.yaml").write_text(
        "counter:\n  _target_: my_observers.EpisodeCounter\n  file: counted.json\n"
    )
    (root / "conf" / "monitor" / "observers" / "broken.yaml").write_text(
        "broken:\n  _target_: my_missing_module.Observer\n"
    )
    return root


def test_an_observer_of_a_users_own_is_one_file_and_one_yaml(
    isolated_mlflow: str, tmp_path: Path
) -> None:
    project = user_project(tmp_path / "research")
    out = tmp_path / "run"
    trained = train(
        "+monitor/observers=counter",
        *TINY,
        "monitor.video.enabled=false",
        f"hydra.run.dir={out}",
        project=project,
    )
    assert trained.returncode == 0, trained.stderr
    client, (run,) = only_run(isolated_mlflow)
    seen = json.loads((out / "counted.json").read_text())
    assert seen == {
        "name": run.info.run_name,
        "lr": 0.005,
        "episodes": int(run.data.metrics["episodes"]),
        "status": "FINISHED",
    }
    record = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert "my_observers" not in Path(record).read_text()  # the record names no code

    again = train(
        f"rerun={run.info.run_id}", f"hydra.run.dir={tmp_path / 'rerun'}", project=project
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "rerun" / "counted.json").read_text())["status"] == "FINISHED"


@pytest.mark.parametrize(
    ("choice", "sentence"),
    [
        (
            "+monitor/observers=nosuch",
            "+monitor/observers=nosuch is not an option: choose one of ",
        ),
        (
            "+monitor/observers=broken",
            "monitor.observers.broken: its _target_ my_missing_module.Observer cannot be "
            "imported (No module named 'my_missing_module');",
        ),
    ],
)
def test_a_bad_observer_is_one_sentence_and_exit_2(
    choice: str, sentence: str, isolated_mlflow: str, tmp_path: Path
) -> None:
    project = user_project(tmp_path / "research")
    refused = train(choice, "monitor=none", f"hydra.run.dir={tmp_path / 'run'}", project=project)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {sentence}"), line
    assert not (tmp_path / "run").exists()
