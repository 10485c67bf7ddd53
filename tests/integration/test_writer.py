"""The writer process: every job it was sent reaches the store, in order, even when the process
that sent them is killed; a job the store refuses fails that run only; Ctrl-C does not stop it;
one writer serves every run of its process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from twrl_exp.monitor import writer as writer_module
from twrl_exp.monitor.writer import Writer, WriterError


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name("w")
    experiment = found.experiment_id if found else client.create_experiment("w")
    return str(client.create_run(experiment).info.run_id)


def history(uri: str, run_id: str, key: str = "x") -> list[float]:
    return [m.value for m in MlflowClient(uri).get_metric_history(run_id, key)]


@pytest.fixture
def writer():
    w = Writer()
    yield w
    w.close()


def test_rows_arrive_in_order_and_sync_waits_for_them(isolated_mlflow: str, writer) -> None:
    run_id = new_run(isolated_mlflow)
    for batch in range(5):
        rows = [("x", float(batch * 1000 + i), 0, batch * 1000 + i) for i in range(1000)]
        writer.rows(isolated_mlflow, run_id, rows)
    writer.sync(run_id)
    assert history(isolated_mlflow, run_id) == [float(i) for i in range(5000)]


def test_an_upload_lands_before_its_tag_and_the_staged_copy_is_removed(
    tmp_path: Path, isolated_mlflow: str, writer
) -> None:
    run_id = new_run(isolated_mlflow)
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "checkpoint-0.pt").write_bytes(b"weights")
    record = json.dumps({"path": "checkpoints/checkpoint-0.pt"})
    writer.upload(
        isolated_mlflow,
        run_id,
        staged / "checkpoint-0.pt",
        "checkpoints",
        tag=("twrl.checkpoint", record),
        remove=staged,
    )
    writer.sync(run_id)
    client = MlflowClient(isolated_mlflow)
    assert client.get_run(run_id).data.tags["twrl.checkpoint"] == record
    local = client.download_artifacts(run_id, "checkpoints/checkpoint-0.pt", str(tmp_path))
    assert Path(local).read_bytes() == b"weights"
    assert not staged.exists()


CURVE = {
    "returns": [1.0, 3.0, 2.0],
    "end_steps": [10, 20, 30],
    "trailing": [1.0, 2.0, 2.0],
    "eval_steps": [30],
    "eval_means": [2.5],
    "eval_stds": [0.5],
    "solved_step": None,
}


def test_the_learning_curve_is_drawn_and_uploaded(isolated_mlflow: str, writer) -> None:
    run_id = new_run(isolated_mlflow)
    writer.curve(isolated_mlflow, run_id, CURVE, title="t", threshold=None, window=2)
    writer.sync(run_id)
    names = [a.path for a in MlflowClient(isolated_mlflow).list_artifacts(run_id)]
    assert names == ["learning_curve.png"]


def drawer_pids(writer: Writer) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(writer._proc.pid).children()]


def test_a_curve_is_drawn_beside_the_next_jobs_and_in_before_the_run_ends(
    isolated_mlflow: str, writer
) -> None:
    """The drawer (its own process) draws while the writer does the jobs after the curve; the
    run's end still comes after the curve's upload."""
    run_id = new_run(isolated_mlflow)
    writer.rows(isolated_mlflow, run_id, [("x", 0.0, 0, 0)])
    writer.sync(run_id)  # the writer is up; its drawer starts with the first curve
    writer.curve(isolated_mlflow, run_id, CURVE, title="t", threshold=None, window=2)
    writer.rows(isolated_mlflow, run_id, [("x", 1.0, 0, 1)])
    writer.end(isolated_mlflow, run_id, "FINISHED", None)
    writer.sync(run_id)
    client = MlflowClient(isolated_mlflow)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id)] == ["learning_curve.png"]
    assert history(isolated_mlflow, run_id) == [0.0, 1.0]
    from urllib.parse import urlparse

    png = Path(urlparse(run.info.artifact_uri).path) / "learning_curve.png"
    assert png.stat().st_mtime * 1000 <= run.info.end_time + 1  # uploaded, then ended
    assert len(drawer_pids(writer)) == 1  # drawn by the drawer, not by the writer


def test_a_curve_that_cannot_be_drawn_fails_that_run_only(isolated_mlflow: str, writer) -> None:
    bad, good = new_run(isolated_mlflow), new_run(isolated_mlflow)
    broken = {**CURVE, "end_steps": [10, 20]}  # one x fewer than y: matplotlib refuses
    writer.curve(isolated_mlflow, bad, broken, title="t", threshold=None, window=2)
    writer.curve(isolated_mlflow, good, CURVE, title="t", threshold=None, window=2)
    with pytest.raises(WriterError, match="learning curve could not be drawn"):
        writer.sync(bad)
    writer.sync(good)
    names = [a.path for a in MlflowClient(isolated_mlflow).list_artifacts(good)]
    assert names == ["learning_curve.png"]


def test_if_the_drawer_dies_the_writer_draws_the_curve_itself(isolated_mlflow: str, writer) -> None:
    run_id = new_run(isolated_mlflow)
    writer.curve(isolated_mlflow, run_id, CURVE, title="t", threshold=None, window=2)
    writer.sync(run_id)
    (pid,) = drawer_pids(writer)
    os.kill(pid, signal.SIGKILL)
    for _ in range(2):  # the first finds it dead on writing or on reading its answer
        writer.curve(isolated_mlflow, run_id, CURVE, title="t", threshold=None, window=2)
    writer.sync(run_id)
    names = [a.path for a in MlflowClient(isolated_mlflow).list_artifacts(run_id)]
    assert names == ["learning_curve.png"]


def test_a_killed_process_loses_none_of_the_rows_it_sent(
    tmp_path: Path, isolated_mlflow: str
) -> None:
    run_id = new_run(isolated_mlflow)
    script = textwrap.dedent(
        f"""
        import os, signal
        from twrl_exp.monitor.writer import shared
        writer = shared()
        for batch in range(20):
            rows = [("x", float(batch * 500 + i), 0, batch * 500 + i) for i in range(500)]
            writer.rows({isolated_mlflow!r}, {run_id!r}, rows)
        print(writer._proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no sync, no close: the run dies here
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    writer_pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 120
    while Path(f"/proc/{writer_pid}").exists() and "Z" not in _state(writer_pid):
        assert time.monotonic() < deadline, "the writer outlived its run by 2 minutes"
        time.sleep(0.2)
    assert history(isolated_mlflow, run_id) == [float(i) for i in range(10_000)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def test_a_row_the_store_refuses_fails_that_run_only(isolated_mlflow: str, writer) -> None:
    run_id, other = new_run(isolated_mlflow), new_run(isolated_mlflow)
    writer.rows(isolated_mlflow, run_id, [("x", 1.0, 0, 0)])
    writer.rows(isolated_mlflow, run_id, [("x" * 1000, 1.0, 0, 0)])  # MLflow refuses the key
    writer.rows(isolated_mlflow, other, [("x", 5.0, 0, 0)])
    with pytest.raises(WriterError, match="exceeds the maximum length"):
        writer.sync(run_id)
    with pytest.raises(WriterError):  # the run learns of it at its next send, and stops
        writer.rows(isolated_mlflow, run_id, [("x", 2.0, 0, 1)])
    writer.rows(isolated_mlflow, other, [("x", 6.0, 0, 1)])
    writer.sync(other)  # the other run is unaffected
    assert history(isolated_mlflow, other) == [5.0, 6.0]
    assert 2.0 not in history(isolated_mlflow, run_id)


def test_ctrl_c_and_sigterm_to_the_process_group_do_not_stop_the_writer(
    isolated_mlflow: str, writer
) -> None:
    run_id = new_run(isolated_mlflow)
    writer.sync(run_id)  # it is up and serving
    os.kill(writer._proc.pid, signal.SIGINT)
    os.kill(writer._proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    writer.rows(isolated_mlflow, run_id, [("x", 7.0, 0, 0)])
    writer.sync(run_id)
    assert history(isolated_mlflow, run_id) == [7.0]
    writer.close()
    assert writer._proc.returncode == 0


def test_one_writer_serves_the_process_and_a_dead_one_is_replaced(
    isolated_mlflow: str, monkeypatch
) -> None:
    monkeypatch.setattr(writer_module, "_shared", None)
    first = writer_module.shared()
    try:
        assert writer_module.shared() is first
        first._proc.kill()
        first._proc.wait()
        run_id = new_run(isolated_mlflow)
        with pytest.raises(WriterError):  # a run that was using it learns it is gone
            first.sync(run_id, timeout=30)
        second = writer_module.shared()
        assert second is not first
        second.rows(isolated_mlflow, run_id, [("x", 1.0, 0, 0)])
        second.sync(run_id)
        assert history(isolated_mlflow, run_id) == [1.0]
    finally:
        writer_module.shared().close()


def open_run(writer, uri: str, **overrides) -> dict:
    options = {
        "experiment": "w",
        "run_name": "r",
        "tags": {"seed": "0"},
        "params": {"update.lr": "0.01"},
        "config_yaml": "update:\n  lr: 0.01\n",
        "system_metrics": False,
    }
    options.update(overrides)
    return writer.opened(writer.open(uri, **options))


def test_the_writer_creates_the_run_and_ends_it(tmp_path: Path, isolated_mlflow: str, writer):
    info = open_run(writer, isolated_mlflow)
    assert info["error"] is None
    run_id = info["run_id"]
    client = MlflowClient(isolated_mlflow)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert run.data.params == {"update.lr": "0.01"}
    assert run.data.tags["seed"] == "0"
    assert client.download_artifacts(run_id, "config.yaml", str(tmp_path))
    writer.set_tag(isolated_mlflow, run_id, "stopped", "solved")
    writer.end(isolated_mlflow, run_id, "FAILED", "because")
    writer.sync(run_id)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["stopped"] == "solved"
    assert run.data.tags["twrl.end_reason"] == "because"


def test_a_run_whose_rows_failed_is_still_ended(isolated_mlflow: str, writer) -> None:
    run_id = open_run(writer, isolated_mlflow)["run_id"]
    writer.rows(isolated_mlflow, run_id, [("x" * 1000, 1.0, 0, 0)])
    with pytest.raises(WriterError):
        writer.sync(run_id)
    writer.end(isolated_mlflow, run_id, "FAILED", "its metrics could not be written")
    with pytest.raises(WriterError):  # the first error stays the run's
        writer.sync(run_id)
    assert MlflowClient(isolated_mlflow).get_run(run_id).info.status == "FAILED"


def test_an_unwritable_store_is_the_users_error_in_one_sentence(tmp_path: Path, writer) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    info = open_run(writer, f"sqlite:///{blocker / 'mlflow.db'}")
    assert info["run_id"] is None
    assert info["config_error"] is True
    assert "cannot be created" in info["error"]
    assert "\n" not in info["error"]


def test_the_model_is_logged_as_a_pyfunc_model_and_its_uri_comes_back(
    tmp_path: Path, isolated_mlflow: str, writer
) -> None:
    info = open_run(writer, isolated_mlflow)
    run_id = info["run_id"]
    folder = tmp_path / "handed" / "model"
    folder.mkdir(parents=True)
    (folder / "agent.pt").write_bytes(b"weights")
    (folder / "config.yaml").write_text("x: 1\n")
    writer.model(isolated_mlflow, run_id, info["experiment_id"], folder, (4,))
    writer.sync(run_id)
    uri = writer.result(run_id, "model")
    assert uri is not None
    assert uri.startswith("models:/")
    names = {a.path for a in MlflowClient(isolated_mlflow).list_artifacts(run_id, "model")}
    assert {"model/agent.pt", "model/config.yaml"} <= names
    assert not folder.parent.exists()  # the writer removed what it was handed


def test_a_training_process_never_imports_mlflow(tmp_path: Path, isolated_mlflow: str) -> None:
    """MLflow's import (seconds) and its store live in the writer process: the run's own
    start-up and hot loop pay for neither, and the record is still complete."""
    script = textwrap.dedent(
        f"""
        import sys
        from hydra import compose, initialize_config_dir
        from twrl_exp.paths import config_dir
        from twrl_exp.train import run
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("config", ["train.max_env_steps=3000", "monitor.console=false",
                                     "monitor.video.enabled=false"])
        run(cfg, run_dir=__import__("pathlib").Path({str(tmp_path / "out")!r}))
        print(sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    (run,) = MlflowClient(isolated_mlflow).search_runs(
        [e.experiment_id for e in MlflowClient(isolated_mlflow).search_experiments()]
    )
    assert run.info.status == "FINISHED"
    assert run.data.metrics["env_steps"] >= 3000
    names = {a.path for a in MlflowClient(isolated_mlflow).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "learning_curve.png", "model", "checkpoints"} <= names


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "update.lr=1e-3,1e-2"],
        ["--multirun", "+sweep=cartpole_reinforce"],
        ["--help"],
        ["--cfg", "job"],
        ["-c", "job"],
        ["--info"],
    ],
)
def test_a_sweep_or_a_command_that_only_prints_starts_no_writer(monkeypatch, argv) -> None:
    """A sweep's own process writes nothing (its trials start their writers when they run)."""
    monkeypatch.setattr(writer_module, "_shared", None)
    writer_module.prestart(argv)
    assert writer_module._shared is None


def test_a_run_starts_its_writer_first_thing(monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "_shared", None)
    writer_module.prestart(["update.lr=0.1"])
    started = writer_module._shared
    assert started is not None
    try:
        assert started.alive
        assert writer_module.shared() is started  # the run finds it ready
    finally:
        started.close()


def test_the_drawer_starts_only_for_a_run_that_draws_a_curve(isolated_mlflow: str) -> None:
    """A sweep's trials draw no curve (its presets say so): their writers start no drawer, whose
    matplotlib import would compete with training for the cores."""
    for curve, drawers in ((False, 0), (True, 1)):
        w = Writer()
        try:
            assert open_run(w, isolated_mlflow, curve=curve)["error"] is None
            assert len(drawer_pids(w)) == drawers
        finally:
            w.close()


def test_the_writer_warms_what_a_first_model_log_would_wait_for() -> None:
    """MLflow maps every installed package's modules on a process's first model log (a second,
    which the first run's end waited for); the writer builds that map while the run trains. If
    MLflow moves it, this fails (the warm-up itself would silently do nothing)."""
    from mlflow.utils import requirements_utils

    writer_module._warm_model()
    assert requirements_utils._MODULES_TO_PACKAGES
    assert "mlflow" in requirements_utils._MODULES_TO_PACKAGES


def test_without_a_drawer_the_writer_draws_the_curve_at_once(isolated_mlflow: str) -> None:
    """Where the drawer cannot be started, the writer's own process draws and uploads."""
    import io

    runs = writer_module._Runs(io.BytesIO())
    runs._drawer_started = True  # as if starting it had failed: no drawer
    run_id = new_run(isolated_mlflow)
    runs.curve(isolated_mlflow, run_id, CURVE, {"title": "t", "threshold": None, "window": 2})
    assert runs.failed == set()
    names = [a.path for a in MlflowClient(isolated_mlflow).list_artifacts(run_id)]
    assert names == ["learning_curve.png"]


def test_a_deleted_experiment_is_refused_not_restored(isolated_mlflow: str) -> None:
    """The user deleted it: restoring it would bring back its deleted runs behind their back."""
    from mlflow.entities import ViewType

    from twrl_exp.errors import ConfigError

    client = MlflowClient(isolated_mlflow)
    experiment = writer_module.ensure_experiment(client, "gone", isolated_mlflow)
    run_id = client.create_run(experiment).info.run_id
    client.delete_experiment(experiment)
    with pytest.raises(ConfigError, match="was deleted; restore it with `MLFLOW_TRACKING_URI="):
        writer_module.ensure_experiment(client, "gone", isolated_mlflow)
    assert client.get_experiment(experiment).lifecycle_stage == "deleted"
    (run,) = client.search_runs([experiment], run_view_type=ViewType.ALL)
    assert (run.info.run_id, run.info.lifecycle_stage) == (run_id, "deleted")
