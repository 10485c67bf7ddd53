"""Opening the MLflow store safely, and keeping its run states true.

- **Creation and migration under a lock.** A fresh SQLite store is created (MLflow runs its
  schema migrations) by the first process to open it, under a file lock beside the database, so
  any number of processes can start at once; a store that is not a database, cannot be written,
  or was left half-migrated is reported in one sentence with the fix.
- **Liveness.** Every run we open carries the host, pid and process start time of its process
  and a heartbeat tag written from a background thread. Whenever anything of ours opens a store,
  runs left RUNNING by a process that no longer exists (kill -9, OOM, a closed laptop) or whose
  heartbeat stopped are marked FAILED, with the reason as a tag.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twrl_exp import processes
from twrl_exp.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

HOST_TAG = "twrl.host"
PID_TAG = "twrl.pid"
HEARTBEAT_TAG = "twrl.heartbeat"
INTERVAL_TAG = "twrl.heartbeat_interval_s"
END_REASON_TAG = "twrl.end_reason"
# Tags a launcher gives the runs of a job (JSON), e.g. the Ray node and task that ran it.
RUN_TAGS_ENV = "TWRL_RUN_TAGS"
HEARTBEAT_INTERVAL_S = 10.0
STALE_AFTER_INTERVALS = 6  # a silent run on another host is stale after 6 missed heartbeats


class StoreError(ConfigError):
    """The store cannot be used as it is: one sentence, with the fix."""


def redact(text: str) -> str:
    """``text`` with the password of every URL in it hidden: ``postgresql://me:***@host/db``."""
    return re.sub(r"([A-Za-z][\w+.\-]*://[^:/@\s'\"]+):[^@\s'\"]+@", r"\1:***@", text)


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    return None


# ---------------------------------------------------------------------------- opening


def open_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` whose store exists, is current, and has no orphans."""
    client = _open(uri)
    reap_orphans(client, uri)
    return client


def _quiet_migrations() -> None:
    import logging

    # Schema migrations of a new store log at INFO; a run's terminal needs none of it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # MLflow logs each database error with its traceback before raising it; we report the
    # error itself, in one sentence.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


@functools.cache
def _open(uri: str) -> MlflowClient:
    _quiet_migrations()
    db = sqlite_path(uri)
    if db is not None:
        _check_writable(db, uri)
    if is_server(uri):
        _check_server(uri)
        # MLflow prints "View run ... at" for every run a server ends; ours say where runs went.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        if db is None:
            return _touch_store(uri)
        from filelock import FileLock

        with FileLock(str(db) + ".lock", timeout=300):
            return _touch_store(uri)
    except StoreError:
        raise
    except Exception as exc:
        raise _store_error(uri, exc) from exc


def _touch_store(uri: str) -> MlflowClient:
    """A client whose store is built (a new one created and migrated) and read once."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)  # builds the store
    client.search_experiments(max_results=1)
    return client


def _check_writable(db: Path, uri: str) -> None:
    folder = db.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"The MLflow store {uri} cannot be created: {exc.strerror} ({folder}); "
            "set MLFLOW_TRACKING_URI or monitor.mlflow.tracking_uri to a writable place."
        ) from exc
    target = db if db.exists() else folder
    if not os.access(target, os.W_OK):
        raise StoreError(
            f"The MLflow store {uri} is not writable ({target}); set MLFLOW_TRACKING_URI or "
            "monitor.mlflow.tracking_uri to a writable place."
        )


def _check_server(uri: str) -> None:
    """Fail in seconds, with the fix, when an MLflow server does not answer (MLflow's client
    would retry for minutes)."""
    import requests

    shown = redact(uri)
    try:
        answer = requests.get(uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as exc:
        raise StoreError(
            f"The MLflow server {shown} cannot be reached ({connection_reason(exc)}); start it "
            "(`make cluster-up` starts one on this machine) or point MLFLOW_TRACKING_URI (or "
            "paths.mlflow_uri) at a running one."
        ) from exc
    if answer.status_code != 200:
        raise StoreError(
            f"{shown} answered HTTP {answer.status_code} at /health, so it is not a working MLflow "
            "server; point MLFLOW_TRACKING_URI (or paths.mlflow_uri) at one."
        )


_KNOWN_REASONS = (
    "Connection refused",
    "password authentication failed",
    "Name or service not known",
    "timed out",
    "timeout",
)


def connection_reason(exc: BaseException) -> str:
    """Why a server or database could not be reached, short: ``connection refused``, else the
    first line of the innermost cause (any password in it hidden)."""
    text = str(exc)
    for known in _KNOWN_REASONS:
        if known in text:
            return known.lower()
    return redact(root_cause(exc))[:200]


def root_cause(exc: BaseException) -> str:
    """The first line of the innermost cause: ``database or disk is full``, not SQLAlchemy's
    wrapping of it."""
    inner = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(inner).strip()
    return (text.splitlines()[0] if text else type(inner).__name__)[:200]


def _store_error(uri: str, exc: BaseException) -> StoreError:
    text = str(exc)
    first = root_cause(exc)
    if "file is not a database" in text or "not a database" in text:
        return StoreError(
            f"{uri} is not an MLflow store (SQLite says: file is not a database); "
            "point MLFLOW_TRACKING_URI or monitor.mlflow.tracking_uri at an MLflow database."
        )
    if "_alembic_tmp" in text or "out-of-date database schema" in text or "alembic" in text:
        return StoreError(
            f"The MLflow store {uri} is half-migrated ({first[:160]}); back it up, then repair it "
            f"with `python -m twrl_exp.store repair {uri}`."
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(
            f"The MLflow store {uri} cannot be written ({first[:160]}); set MLFLOW_TRACKING_URI "
            "or monitor.mlflow.tracking_uri to a writable place."
        )
    if "disk is full" in text or "No space left" in text:
        return StoreError(f"The MLflow store {uri} is on a full disk; free some space.")
    return StoreError(f"The MLflow store {redact(uri)} cannot be opened: {redact(first)[:200]}")


def repair(uri: str) -> str:
    """Finish a migration that an interrupted process left half-done (SQLite stores)."""
    import sqlite3

    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine_with_retry

    db = sqlite_path(uri)
    if db is None or not db.exists():
        raise StoreError(f"repair needs an existing sqlite:/// store, not {uri}.")
    _quiet_migrations()
    with sqlite3.connect(db) as connection:
        leftovers = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '_alembic_tmp_%'"
            )
        ]
        for name in leftovers:
            connection.execute(f'DROP TABLE "{name}"')
    _upgrade_db(create_sqlalchemy_engine_with_retry(uri))
    _open.cache_clear()
    _open(uri)
    return f"{uri} repaired (dropped {len(leftovers)} leftover table(s), schema upgraded)."


# ---------------------------------------------------------------------------- liveness


def liveness_tags() -> dict[str, str]:
    """Where this run's process lives and its first heartbeat, plus what its launcher says about
    where it runs (``$TWRL_RUN_TAGS``: e.g. the Ray node, task and job key)."""
    launcher = json.loads(os.environ.get(RUN_TAGS_ENV) or "{}")
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: processes.identity(),
        HEARTBEAT_TAG: f"{time.time():.3f}",
        INTERVAL_TAG: f"{HEARTBEAT_INTERVAL_S:g}",
        **{str(k): str(v) for k, v in launcher.items()},
    }


def lost_reason(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why a RUNNING run with these tags is an orphan, or None if it may still be alive."""
    if HEARTBEAT_TAG not in tags:
        return None  # not recorded by us: leave it alone
    now = time.time() if now is None else now
    beat = float(tags[HEARTBEAT_TAG])
    host, pid = tags.get(HOST_TAG, "?"), tags.get(PID_TAG, "?")
    seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(beat))
    if processes.alive(pid) is False:
        return (
            f"lost: its {processes.describe(pid)} ended without closing the run "
            f"(last heartbeat {seen})"
        )
    interval = float(tags.get(INTERVAL_TAG, HEARTBEAT_INTERVAL_S))
    if now - beat > STALE_AFTER_INTERVALS * interval:
        return f"lost: no heartbeat from its process on {host} since {seen}"
    return None


def reap_orphans(client: MlflowClient, uri: str) -> list[str]:
    """Mark runs whose process is gone FAILED (with ``twrl.end_reason``); their ids."""
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        running = (
            client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=5000)
            if experiments
            else []
        )
    except Exception as exc:
        raise _store_error(uri, exc) from exc
    reaped = []
    now = time.time()
    for run in running:
        reason = lost_reason(run.data.tags, now)
        if reason is None:
            continue
        end_ms = int(float(run.data.tags[HEARTBEAT_TAG]) * 1000)
        client.set_tag(run.info.run_id, END_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, "FAILED", end_time=max(end_ms, run.info.start_time))
        reaped.append(run.info.run_id)
    return reaped


class Heartbeat:
    """Calls ``beat()`` every ``interval`` seconds from a daemon thread until :meth:`stop`.

    A thread dies with its process, so a stopped heartbeat means a dead (or hung) process.
    Errors in ``beat`` (a store briefly locked or unreachable) are retried at the next beat.
    """

    def __init__(self, beat: Callable[[], Any], interval: float = HEARTBEAT_INTERVAL_S) -> None:
        self.beat, self.interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="twrl-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the store briefly locked or unreachable: the next beat retries
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)


def run_heartbeat(client: MlflowClient, run_id: str) -> Heartbeat:
    return Heartbeat(lambda: client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}"))


def main(argv: list[str] | None = None) -> int:
    """``python -m twrl_exp.store repair <uri>``: finish an interrupted schema migration."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "repair":
        print("usage: python -m twrl_exp.store repair sqlite:///path/to/mlflow.db", file=sys.stderr)
        return 2
    try:
        print(repair(args[1]))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
