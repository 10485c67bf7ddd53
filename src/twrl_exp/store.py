"""Opening the MLflow store safely, keeping its run states true, and saying what is wrong with
a disk a run writes to.

- **Creation and migration under a lock.** A fresh SQLite store is created (MLflow runs its
  schema migrations) by the first process to open it, under a file lock beside the database, so
  any number of processes can start at once; a creator that takes no lock (``mlflow ui``, a
  notebook's client) is waited out. A store that is a folder, is not a database, is damaged,
  cannot be written, or was left half-migrated is reported in seconds in one sentence with the
  fix (MLflow itself retries for minutes before it fails).
- **Readers only read.** ``open_client(uri, read_only=True)`` (the leaderboard, ``evaluate``, a
  notebook) creates, migrates, locks and writes nothing, so it works on a read-only store and on
  a full disk; orphans are left to the next command that writes.
- **Liveness.** Every run we open carries the host, pid and process start time of its process
  and a heartbeat tag written from a background thread. Whenever a run, a sweep or a resume
  opens a store, runs left RUNNING by a process that no longer exists (kill -9, OOM, a closed
  laptop) or whose heartbeat stopped are marked FAILED, with the reason as a tag; a run whose
  tags are unreadable (a damaged store) is not left RUNNING for ever either.
- **A full disk.** When MLflow cannot end a run (its transaction needs a journal file and new
  pages), the end is written in place (:func:`end_in_place`), which a full disk usually still
  allows; where even that fails, the reason goes into the run's heartbeat tag, which is written
  padded so that it can be rewritten in place, and whoever reaps the run records it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twrl_exp import processes
from twrl_exp.errors import ConfigError, RecordingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

HOST_TAG = "twrl.host"
PID_TAG = "twrl.pid"
HEARTBEAT_TAG = "twrl.heartbeat"
INTERVAL_TAG = "twrl.heartbeat_interval_s"
END_REASON_TAG = "twrl.end_reason"
# Where a run's newest checkpoint is (JSON: its artifact path and env steps); set after upload.
CHECKPOINT_TAG = "twrl.checkpoint"
# Tags a launcher gives the runs of a job (JSON), e.g. the Ray node and task that ran it.
RUN_TAGS_ENV = "TWRL_RUN_TAGS"
HEARTBEAT_INTERVAL_S = 10.0
STALE_AFTER_INTERVALS = 6  # a silent run on another host is stale after 6 missed heartbeats
# A heartbeat is written padded to this width, so that the reason a run ended can replace it in
# place (same size: no new page) when the disk is too full for anything else.
HEARTBEAT_WIDTH = 240


class StoreError(ConfigError):
    """The store cannot be used as it is: one sentence, with the fix."""


class DiskFullError(RecordingError):
    """A disk the run writes to is full: one sentence naming it, its free space and the fix.

    ``end_reason`` is what the run's record says (``disk full: ...``); ``run_id``, once known,
    makes the fix a resume of that run.
    """

    def __init__(self, what: str, path: str | Path) -> None:
        self.what, self.path = what, Path(path)
        self.free = free_bytes(self.path)
        self.run_id: str | None = None
        super().__init__(self.end_reason)

    @property
    def end_reason(self) -> str:
        where = f"{self.what} {self.path}"
        return f"disk full: the disk holding {where} is full ({self.free:,} bytes free)"

    def __str__(self) -> str:
        from twrl_exp.paths import commands

        if self.run_id:
            fix = f"free some space, then `{commands()[0]} resume={self.run_id}` continues the run"
        else:
            fix = "free some space and run the command again"
        return f"{self.end_reason}; {fix}."


def free_bytes(path: Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing folder); 0 if unknown."""
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free
    return 0


def is_disk_full(problem: BaseException | str) -> bool:
    """Whether an error (or its text) says that a disk or a quota is full."""
    if isinstance(problem, OSError) and problem.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(problem)
    return any(s in text for s in ("disk is full", "No space left", "Disk quota exceeded"))


def folder_error(
    exc: OSError, what: str = "the run's output folder"
) -> ConfigError | DiskFullError | None:
    """One sentence for a folder that cannot be written (full, read-only, not ours), or None.

    Hydra makes a run's output folder before any of our code runs: this is what the command line
    says when that fails, instead of Hydra's traceback."""
    path = Path(exc.filename).absolute() if exc.filename else _logging_folder()
    if is_disk_full(exc):
        return DiskFullError(what, path)
    if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    folder = next((p for p in (path, *path.parents) if p.exists()), path)
    why = "is read-only" if exc.errno == errno.EROFS else "cannot be written (permission denied)"
    return ConfigError(
        f"{folder} {why}, so {what} {path} cannot be made there; run from a writable folder, or "
        "point hydra.run.dir (the output folder) and MLFLOW_TRACKING_URI (the MLflow store) at "
        "writable places."
    )


def _logging_folder() -> Path:
    """The folder of the run's log file (Hydra's output folder), else the working directory."""
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename).parent
    return Path.cwd()


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


def open_client(uri: str, *, read_only: bool = False) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` whose store exists, is current, and has no orphans.

    ``read_only``: for commands that only read (the leaderboard, ``evaluate``): the store must
    exist and be current already; nothing is created, migrated, locked or written (so a store
    on a read-only folder or a full disk can be read), and orphans are left to the next writer.
    """
    if read_only:
        return _open_read_only(uri)
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
        _probe(db, uri)
    if is_server(uri):
        _check_server(uri)
        # MLflow prints "View run ... at" for every run a server ends; ours say where runs went.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        if db is None:
            return _touch_store(uri)
        from filelock import FileLock

        with FileLock(str(db) + ".lock", timeout=300):
            return _touch_sqlite_store(db, uri)
    except StoreError:
        raise
    except Exception as exc:
        if db is not None and is_disk_full(exc):
            raise DiskFullError("the MLflow store", db) from exc
        raise store_error(uri, exc) from exc


@functools.cache
def _open_read_only(uri: str) -> MlflowClient:
    _quiet_migrations()
    db = sqlite_path(uri)
    if db is not None:
        tables = _probe(db, uri)
        if tables is None or not {"experiments", "runs", "tags"} <= tables:
            what = "no MLflow store" if tables is None else "no MLflow store (no runs table)"
            raise StoreError(
                f"There is {what} at {uri}; point MLFLOW_TRACKING_URI (or --tracking-uri, "
                "tracking_uri=) at the store your runs went to."
            )
    if is_server(uri):
        _check_server(uri)
    try:
        return _touch_store(uri)
    except StoreError:
        raise
    except Exception as exc:
        raise store_error(uri, exc, read_only=True) from exc


# An outside creator (``mlflow ui``, a notebook's client) takes no lock: it may be migrating a new
# store while we do. We retry whenever it has written since our attempt failed (once it has been
# quiet for QUIET_S); a store nobody else writes gets one more try, then is reported.
CREATION_WINDOW_S = 120.0
QUIET_S = 2.0


def _touch_sqlite_store(db: Path, uri: str) -> MlflowClient:
    """:func:`_touch_store` on a SQLite store, riding out a concurrent creator that takes no
    lock: its half-made schema fails our attempt (``table experiments already exists``, a
    half-migrated version row); once the file has been quiet for a moment, we try again. A store
    that fails the same way with nobody else writing it is reported (in seconds, not minutes)."""
    deadline = time.monotonic() + CREATION_WINDOW_S
    strikes = 0
    while True:
        try:
            return _touch_store(uri)
        except Exception as exc:
            if is_disk_full(exc) or _is_damaged(exc) or time.monotonic() > deadline:
                raise
            failed_at = _written(db)
            _wait_until_quiet(db, deadline)
            if _written(db) <= failed_at:  # nobody else wrote it since our attempt failed
                strikes += 1
                if strikes == 2 and _finish_new_store(db, uri):
                    continue  # a store with no run yet, left half-migrated (by a race): finished
                if strikes >= 2:
                    raise


def _finish_new_store(db: Path, uri: str) -> bool:
    """Finish the migration of a store that holds no run yet and was left half-done (two
    creators migrating one new store at once, ours and a lock-free ``mlflow ui``, can leave a
    batch migration's ``_alembic_tmp_*`` table): drop the leftovers and upgrade the schema. With
    no run there is nothing to lose; a store with runs is reported with its repair instead.
    Whether it worked."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection, connection:
            listed = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {name for (name,) in listed}
            if "runs" in tables and connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]:
                return False
            for name in sorted(t for t in tables if t.startswith("_alembic_tmp_")):
                connection.execute(f'DROP TABLE "{name}"')
        from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine_with_retry

        engine = create_sqlalchemy_engine_with_retry(uri)
        try:
            _upgrade_db(engine)
        finally:
            engine.dispose()
    except Exception:
        return False
    return True


def _is_damaged(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("not a database", "malformed", "disk image", "readonly"))


def _written(db: Path) -> float:
    """When ``db`` (or its journal) was last written (0 if it does not exist)."""
    files = (db, Path(f"{db}-journal"), Path(f"{db}-wal"))
    return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)


def _wait_until_quiet(db: Path, deadline: float) -> None:
    """Until nobody has written ``db`` for QUIET_S (or ``deadline``)."""
    while time.monotonic() < deadline and time.time() - _written(db) < QUIET_S:
        time.sleep(0.25)


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


def _probe(db: Path, uri: str) -> set[str] | None:
    """The tables of the SQLite file ``db`` (None if there is no file), read without writing;
    a path that is not a database file is refused at once (MLflow would retry for minutes)."""
    import sqlite3

    if not db.exists():
        return None
    if db.is_dir():
        raise StoreError(
            f"The MLflow store {uri} is a folder, not a database file; move the folder away, or "
            "point MLFLOW_TRACKING_URI or monitor.mlflow.tracking_uri at a file "
            "(sqlite:///path/to/mlflow.db)."
        )
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        ) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {name for (name,) in rows}
    except sqlite3.Error as exc:
        raise store_error(uri, exc, read_only=True) from exc


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


def store_error(uri: str, exc: BaseException, *, read_only: bool = False) -> StoreError:
    """The store's failure ``exc`` as one sentence with its fix."""
    text = str(exc)
    first = root_cause(exc)
    if "file is not a database" in text or "not a database" in text:
        return StoreError(
            f"{uri} is not an MLflow store (SQLite says: file is not a database); "
            "point MLFLOW_TRACKING_URI or monitor.mlflow.tracking_uri at an MLflow database (if "
            "the file was one, it is damaged beyond repair: restore it from a backup)."
        )
    if "malformed" in text or "disk image" in text:
        return StoreError(
            f"The MLflow store {uri} is damaged (SQLite says: {first[:120]}); salvage what it "
            f"holds with `python -m twrl_exp.store repair {uri}` (the damaged file is kept "
            "beside it), or restore it from a backup."
        )
    if "_alembic_tmp" in text or "out-of-date database schema" in text or "alembic" in text:
        return StoreError(
            f"The MLflow store {uri} is half-migrated ({first[:160]}); back it up, then repair it "
            f"with `python -m twrl_exp.store repair {uri}`."
        )
    if read_only and ("unable to open" in text or "readonly" in text):
        return StoreError(
            f"The MLflow store {uri} cannot be read ({first[:160]}); point MLFLOW_TRACKING_URI "
            "at a store this user can read."
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(
            f"The MLflow store {uri} cannot be written ({first[:160]}); set MLFLOW_TRACKING_URI "
            "or monitor.mlflow.tracking_uri to a writable place."
        )
    if is_disk_full(text):
        return StoreError(f"The MLflow store {uri} is on a full disk; free some space.")
    return StoreError(f"The MLflow store {redact(uri)} cannot be opened: {redact(first)[:200]}")


# ---------------------------------------------------------------------------- liveness


def liveness_tags() -> dict[str, str]:
    """Where this run's process lives and its first heartbeat, plus what its launcher says about
    where it runs (``$TWRL_RUN_TAGS``: e.g. the Ray node, task and job key)."""
    launcher = json.loads(os.environ.get(RUN_TAGS_ENV) or "{}")
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: processes.identity(),
        HEARTBEAT_TAG: heartbeat_value(),
        INTERVAL_TAG: f"{HEARTBEAT_INTERVAL_S:g}",
        **{str(k): str(v) for k, v in launcher.items()},
    }


def heartbeat_value(beat: float | None = None, note: str = "", width: int = HEARTBEAT_WIDTH) -> str:
    """``<unix time> [<why the run ended>]``, padded (or cut) to ``width`` characters."""
    text = f"{time.time() if beat is None else beat:.3f} {note}".rstrip()
    return text[:width].ljust(width)


def read_heartbeat(value: str) -> tuple[float, str] | None:
    """The time and the note (why the run ended, if its process wrote one) of a heartbeat tag;
    None if it is unreadable."""
    first, _, note = value.strip().partition(" ")
    try:
        beat = float(first)
    except ValueError:
        return None
    return (beat, note.strip()) if math.isfinite(beat) else None


def lost_reason(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why a RUNNING run with these tags is an orphan, or None if it may still be alive."""
    if HEARTBEAT_TAG not in tags:
        return None  # not recorded by us: leave it alone
    now = time.time() if now is None else now
    host, pid = tags.get(HOST_TAG, "?"), tags.get(PID_TAG, "?")
    heartbeat = read_heartbeat(tags[HEARTBEAT_TAG])
    alive = processes.alive(pid)
    if heartbeat is None:
        if alive:
            return None
        shown = tags[HEARTBEAT_TAG].strip()[:40]
        return f"lost: its heartbeat tag is unreadable ({shown!r}: a damaged store?), so it ended"
    beat, note = heartbeat
    if note:  # its process could not end the run (a full disk), but said why
        return note
    seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(beat))
    if alive is False:
        return (
            f"lost: its {processes.describe(pid)} ended without closing the run "
            f"(last heartbeat {seen})"
        )
    try:
        interval = float(tags.get(INTERVAL_TAG, HEARTBEAT_INTERVAL_S))
    except ValueError:
        interval = HEARTBEAT_INTERVAL_S
    if now - beat > STALE_AFTER_INTERVALS * interval:
        return f"lost: no heartbeat from its process on {host} since {seen}"
    return None


def reap_orphans(client: MlflowClient, uri: str, note: str = "") -> list[str]:
    """Mark runs whose process is gone FAILED (with ``twrl.end_reason``, ``note`` added); their
    ids. A run that cannot be marked now (a full disk, a locked store) is left to the next
    opener: reaping never stops the command that opened the store."""
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        running = (
            client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=5000)
            if experiments
            else []
        )
    except Exception as exc:
        raise store_error(uri, exc) from exc
    reaped = []
    now = time.time()
    for run in running:
        reason = lost_reason(run.data.tags, now)
        if reason is None:
            continue
        heartbeat = read_heartbeat(run.data.tags[HEARTBEAT_TAG])
        end_ms = int((heartbeat[0] if heartbeat else now) * 1000)
        try:
            client.set_tag(run.info.run_id, END_REASON_TAG, (reason + note)[:5000])
            start = run.info.start_time or 0
            client.set_terminated(run.info.run_id, "FAILED", end_time=max(end_ms, start))
        except Exception:
            continue
        reaped.append(run.info.run_id)
    return reaped


def end_in_place(uri: str, run_id: str, status: str, reason: str | None) -> str | None:
    """End a run by writing its SQLite file directly, when MLflow could not (a full disk).

    MLflow's transaction needs a journal file and new pages; overwriting a few rows in place with
    the journal in memory needs neither. Returns ``"ended"`` (status and reason written),
    ``"noted"`` (only the reason, into the run's heartbeat tag, same size: the run stays RUNNING
    and whoever reaps it records that reason), or None (nothing could be written).
    """
    import sqlite3

    db = sqlite_path(uri)
    if db is None or not db.is_file():
        return None
    try:
        connection = sqlite3.connect(db, timeout=30, isolation_level=None)
    except sqlite3.Error:
        return None
    with contextlib.closing(connection):
        try:
            connection.execute("PRAGMA journal_mode=MEMORY")
        except sqlite3.Error:
            return None
        set_tag = "UPDATE tags SET value = ? WHERE key = ? AND run_uuid = ?"
        ended: list[tuple[str, tuple[Any, ...]]] = [
            ("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?", (status, _ms(), run_id))
        ]
        if reason:
            ended += [
                (set_tag, (reason[:5000], END_REASON_TAG, run_id)),
                (
                    "INSERT OR IGNORE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                    (END_REASON_TAG, reason[:5000], run_id),
                ),
            ]
        if _transaction(connection, ended):
            return "ended"
        if not reason:
            return None
        try:
            found = connection.execute(
                "SELECT value FROM tags WHERE key = ? AND run_uuid = ?", (HEARTBEAT_TAG, run_id)
            ).fetchone()
        except sqlite3.Error:
            return None
        heartbeat = read_heartbeat(found[0]) if found else None
        if heartbeat is None:
            return None
        value = heartbeat_value(heartbeat[0], reason, width=max(len(found[0]), HEARTBEAT_WIDTH))
        noted: list[tuple[str, tuple[Any, ...]]] = [(set_tag, (value, HEARTBEAT_TAG, run_id))]
        return "noted" if _transaction(connection, noted) else None


def _transaction(connection: Any, statements: list[tuple[str, tuple[Any, ...]]]) -> bool:
    import sqlite3

    try:
        connection.execute("BEGIN IMMEDIATE")
        for sql, args in statements:
            connection.execute(sql, args)
        connection.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        return False
    return True


def _ms() -> int:
    return int(time.time() * 1000)


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
    return Heartbeat(lambda: client.set_tag(run_id, HEARTBEAT_TAG, heartbeat_value()))


if __name__ == "__main__":  # python -m twrl_exp.store repair <uri>
    import runpy

    # The repair tool sits above this module (it uses it); running it as the program, rather
    # than importing it, keeps the module twrl_exp.store free of any import of it.
    runpy.run_module("twrl_exp.store_repair", run_name="__main__", alter_sys=True)
