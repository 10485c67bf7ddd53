"""Ending a run in place on a disk too full for MLflow (a real full tmpfs: mounting starts a
process)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.integration.disks import fill, tmpfs
from tests.unit.test_store import running_run
from twrl_exp import store


def test_a_run_is_ended_in_place_on_a_disk_too_full_for_mlflow(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "4m") as disk:
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        run_ids = [running_run(uri) for _ in range(3)]
        fill(disk)
        client = MlflowClient(uri)
        with pytest.raises(Exception, match="full"):
            client.set_terminated(run_ids[0], "FAILED")  # what MLflow can do here
        reason = "disk full: the disk holding the MLflow store x is full (0 bytes free)"
        for run_id in run_ids:
            assert store.end_in_place(uri, run_id, "FAILED", reason) == "ended"
        for run_id in run_ids:
            run = client.get_run(run_id)  # reading works on a full disk
            assert run.info.status == "FAILED"
            assert run.data.tags[store.END_REASON_TAG] == reason
        with sqlite3.connect(disk / "mlflow.db") as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not list(disk.glob("mlflow.db-*"))  # no journal left behind
