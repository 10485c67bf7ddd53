"""The store's own rules: which runs are orphans (and why), ending a run on a full disk, opening
a store only to read it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from twrl_exp import store


def dead_pid() -> str:
    """The identity of a process on this host that is not running."""
    import socket

    return f"{socket.gethostname()}:999999999@1.00"


def running_run(uri: str, heartbeat: str | None = None) -> str:
    client = store.open_client(uri)
    found = client.get_experiment_by_name("s")
    experiment = found.experiment_id if found else client.create_experiment("s")
    tags = {**store.liveness_tags(), store.PID_TAG: dead_pid()}
    if heartbeat is not None:
        tags[store.HEARTBEAT_TAG] = heartbeat
    return str(client.create_run(experiment, tags=tags).info.run_id)


def test_a_heartbeat_is_padded_so_a_reason_can_replace_it_in_place() -> None:
    value = store.heartbeat_value(1000.5)
    assert len(value) == store.HEARTBEAT_WIDTH
    assert float(value) == 1000.5  # what older readers do with it
    noted = store.heartbeat_value(1000.5, "disk full: the disk holding x is full")
    assert len(noted) == len(value)
    assert store.read_heartbeat(noted) == (1000.5, "disk full: the disk holding x is full")


def test_why_a_run_is_lost() -> None:
    now = time.time()
    alive = store.liveness_tags()  # this very process
    assert store.lost_reason(alive, now) is None
    dead = {**alive, store.PID_TAG: dead_pid()}
    assert store.lost_reason(dead, now).startswith("lost: its process 999999999")
    noted = {**alive, store.HEARTBEAT_TAG: store.heartbeat_value(now, "disk full: x")}
    assert store.lost_reason(noted, now) == "disk full: x"  # its own reason, even while alive
    garbled = {**dead, store.HEARTBEAT_TAG: "\x00\x17garbage"}
    assert "heartbeat tag is unreadable" in store.lost_reason(garbled, now)
    assert store.lost_reason({**alive, store.HEARTBEAT_TAG: "garbage"}, now) is None  # alive
    elsewhere = {**alive, store.PID_TAG: "elsewhere:1@1.00", store.INTERVAL_TAG: "oops"}
    assert store.lost_reason(elsewhere, now) is None
    assert store.lost_reason(elsewhere, now + 3600).startswith("lost: no heartbeat")


def test_a_run_with_unreadable_tags_is_reaped_and_does_not_stop_the_opener(
    isolated_mlflow: str,
) -> None:
    """A store damaged in a run's tags used to make every opener fail (float('garbage')), so
    nothing could reap the run and nothing could train."""
    run_id = running_run(isolated_mlflow, heartbeat="garbage")
    store._open.cache_clear()
    client = store.open_client(isolated_mlflow)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "heartbeat tag is unreadable" in run.data.tags[store.END_REASON_TAG]


def test_a_reason_noted_in_the_heartbeat_is_what_the_reaper_records(isolated_mlflow: str) -> None:
    """Where even an in-place end cannot be written (here: the runs table refuses updates),
    the reason goes into the heartbeat, same size, and the next opener records it."""
    run_id = running_run(isolated_mlflow)
    db = store.sqlite_path(isolated_mlflow)
    before = (
        sqlite3.connect(db)
        .execute(
            "SELECT length(value) FROM tags WHERE key = ? AND run_uuid = ?",
            (store.HEARTBEAT_TAG, run_id),
        )
        .fetchone()[0]
    )
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TRIGGER full BEFORE UPDATE ON runs "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    reason = "disk full: the disk holding the MLflow store x is full (0 bytes free)"
    assert store.end_in_place(isolated_mlflow, run_id, "FAILED", reason) == "noted"
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TRIGGER full")
        value, status = connection.execute(
            "SELECT t.value, r.status FROM tags t JOIN runs r USING (run_uuid) "
            "WHERE t.key = ? AND r.run_uuid = ?",
            (store.HEARTBEAT_TAG, run_id),
        ).fetchone()
    assert status == "RUNNING"
    assert len(value) == before
    assert store.read_heartbeat(value)[1] == reason
    ended = store.open_client(isolated_mlflow).get_run(run_id)
    assert ended.info.status == "FAILED"
    assert ended.data.tags[store.END_REASON_TAG] == reason


def test_a_reader_creates_nothing_and_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    with pytest.raises(store.StoreError, match="There is no MLflow store at"):
        store.open_client(missing, read_only=True)
    assert not (tmp_path / "none").exists()
    folder = tmp_path / "mlflow.db"
    folder.mkdir()
    started = time.monotonic()
    with pytest.raises(store.StoreError, match="is a folder, not a database file"):
        store.open_client(f"sqlite:///{folder}", read_only=True)
    with pytest.raises(store.StoreError, match="is a folder, not a database file"):
        store.open_client(f"sqlite:///{folder}")
    assert time.monotonic() - started < 10  # MLflow alone retries for minutes
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(store.StoreError, match="no MLflow store"):
        store.open_client(f"sqlite:///{empty}", read_only=True)
    assert empty.stat().st_size == 0  # not made into a store
    assert not list(tmp_path.glob("*.lock"))
