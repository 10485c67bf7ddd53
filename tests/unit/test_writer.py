"""The metric writer process: every row it was sent reaches the store, even when the run that
sent them is killed; a row the store refuses fails the run; Ctrl-C does not stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from twrl_exp.monitor.writer import MetricWriter, WriterError


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    experiment = client.create_experiment("w")
    return str(client.create_run(experiment).info.run_id)


def history(uri: str, run_id: str, key: str = "x") -> list[float]:
    return [m.value for m in MlflowClient(uri).get_metric_history(run_id, key)]


def test_rows_arrive_in_order_and_sync_waits_for_them(isolated_mlflow: str) -> None:
    run_id = new_run(isolated_mlflow)
    writer = MetricWriter(isolated_mlflow, run_id)
    for batch in range(5):
        writer.send([("x", float(batch * 1000 + i), 0, batch * 1000 + i) for i in range(1000)])
    writer.sync()
    assert history(isolated_mlflow, run_id) == [float(i) for i in range(5000)]
    writer.close()


def test_a_killed_run_loses_none_of_the_rows_it_sent(tmp_path: Path, isolated_mlflow: str) -> None:
    run_id = new_run(isolated_mlflow)
    script = textwrap.dedent(
        f"""
        import os, signal
        from twrl_exp.monitor.writer import MetricWriter
        writer = MetricWriter({isolated_mlflow!r}, {run_id!r})
        for batch in range(20):
            writer.send([("x", float(batch * 500 + i), 0, batch * 500 + i) for i in range(500)])
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


def test_a_row_the_store_refuses_fails_the_run(isolated_mlflow: str) -> None:
    run_id = new_run(isolated_mlflow)
    writer = MetricWriter(isolated_mlflow, run_id)
    writer.send([("x", 1.0, 0, 0)])
    writer.send([("x" * 1000, 1.0, 0, 0)])  # MLflow refuses a 1000-character key
    with pytest.raises(WriterError, match="exceeds the maximum length"):
        writer.sync()
    with pytest.raises(WriterError):  # the run learns of it at its next send, and stops
        writer.send([("x", 2.0, 0, 1)])
    writer.close()
    assert 2.0 not in history(isolated_mlflow, run_id)


def test_ctrl_c_to_the_process_group_does_not_stop_the_writer(isolated_mlflow: str) -> None:
    run_id = new_run(isolated_mlflow)
    writer = MetricWriter(isolated_mlflow, run_id)
    writer.sync()  # it is up and serving
    os.kill(writer._proc.pid, signal.SIGINT)
    time.sleep(0.5)
    writer.send([("x", 7.0, 0, 0)])
    writer.sync()
    assert history(isolated_mlflow, run_id) == [7.0]
    writer.close()
    assert writer._proc.returncode == 0
