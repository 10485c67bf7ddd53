"""The store as the entry points meet it: broken, unwritable, or left half-migrated."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twrl_exp.build import project_root

TRAIN = str(project_root() / "train.py")


def command(kind: str, uri: str) -> list[str]:
    return {
        "train": [TRAIN, "train.max_env_steps=500", "monitor.console=false"],
        "sweep": [TRAIN, "-m", "seed=0,1", "train.max_env_steps=500", "monitor.console=false"],
        "evaluate": ["-m", "twrl_exp.evaluate", "run_id=0123456789abcdef"],
        "leaderboard": ["-m", "twrl_exp.leaderboard", "--no-html"],
    }[kind]


def run(kind: str, uri: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project_root()), "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        [sys.executable, *command(kind, uri)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("kind", ["train", "sweep", "evaluate", "leaderboard"])
@pytest.mark.parametrize("store", ["not-a-database", "unwritable", "a-folder"])
def test_a_bad_store_is_one_sentence_at_every_entry_point(
    tmp_path: Path, kind: str, store: str
) -> None:
    if store == "not-a-database":
        db = tmp_path / "notes.db"
        db.write_text("my notes, not a database\n" * 100)
        fragment = "is not an MLflow store"
    elif store == "unwritable":
        db = tmp_path / "afile" / "mlflow.db"  # a folder under a plain file cannot exist
        (tmp_path / "afile").write_text("x")
        fragment = "cannot be created"
    else:  # MLflow alone retries such a path for minutes before it fails
        db = tmp_path / "mlflow.db"
        db.mkdir()
        fragment = "is a folder, not a database file"
    started = time.monotonic()
    result = run(kind, f"sqlite:///{db}", tmp_path)
    assert time.monotonic() - started < 60
    if kind == "leaderboard" and store == "unwritable":  # it only reads: there is no store
        assert result.returncode == 0
        assert "there is no MLflow store" in result.stdout
        return
    if kind == "evaluate" and store == "unwritable":  # it only reads: there is no store
        fragment = "There is no MLflow store at"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "outputs").exists()
    assert not (tmp_path / "multirun").exists() or not any((tmp_path / "multirun").rglob("*.pt"))
    assert not list(tmp_path.glob("*.lock"))  # refused before anything was locked


def migrate(db: Path, revision: str | None = None) -> None:
    """Create MLflow's schema in ``db`` and migrate it to ``revision`` (the second oldest if
    None: a store still being migrated, or left at an old schema)."""
    import sqlalchemy
    from alembic import command as alembic
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import InitialBase, _get_alembic_config

    url = f"sqlite:///{db}"
    config = _get_alembic_config(url)
    revisions = [r.revision for r in ScriptDirectory.from_config(config).walk_revisions()]
    engine = sqlalchemy.create_engine(url)
    InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        alembic.upgrade(config, revisions[-2] if revision is None else revision)
    engine.dispose()


def make_half_migrated(db: Path, *, with_run: bool = True) -> None:
    """A store at an old schema with the temporary table an interrupted batch migration
    leaves behind: what two processes migrating one new store at once used to produce; with
    ``with_run``, a user's store (it holds a run)."""
    migrate(db)
    with sqlite3.connect(db) as connection:
        if with_run:
            connection.execute(
                "INSERT INTO runs (run_uuid, name, source_type, status, start_time, "
                "lifecycle_stage, experiment_id) VALUES (?, 'mine', 'LOCAL', 'FINISHED', 0, "
                "'active', 0)",
                ("0" * 32,),
            )
        connection.execute("CREATE TABLE _alembic_tmp_tags (id INTEGER)")


def test_a_half_migrated_store_is_reported_with_its_repair(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    make_half_migrated(db)
    uri = f"sqlite:///{db}"
    refused = run("train", uri, tmp_path)
    assert refused.returncode == 2
    assert "half-migrated" in refused.stderr
    assert f"python -m twrl_exp.store repair {uri}" in refused.stderr
    repaired = subprocess.run(
        [sys.executable, "-m", "twrl_exp.store", "repair", uri],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert repaired.returncode == 0, repaired.stderr
    assert run("train", uri, tmp_path).returncode == 0


OUTSIDE_CREATOR = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
import mlflow.store.tracking.sqlalchemy_store
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
MlflowClient(tracking_uri=sys.argv[1]).search_experiments()
"""

OUR_OPENER = """
import sys, time
from pathlib import Path
from twrl_exp import store
import mlflow.store.tracking.sqlalchemy_store  # imported before the start, as the creator's
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
time.sleep(float(sys.argv[3]))  # arrive while the other creator is migrating
store.open_client(sys.argv[1]).search_experiments()
"""


@pytest.mark.parametrize("later_s", [0.2, 0.4, 0.6, 0.8])
def test_a_store_another_client_is_creating_at_the_same_moment_is_waited_for(
    tmp_path: Path, later_s: float
) -> None:
    """``mlflow ui`` or a notebook's MlflowClient creates a new store without our lock. A run
    that opens the store at the same moment meets a half-made schema; it waits until the other
    creator is done instead of failing (it used to fail with 'table experiments already exists'
    or 'half-migrated ... repair it', in three of four of these
    timings)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, uri, str(go), str(later_s)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in (OUTSIDE_CREATOR, OUR_OPENER)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
    go.touch()
    _, ours = (proc.communicate(timeout=240) for proc in procs)
    assert procs[1].returncode == 0, ours[1]


def test_a_new_store_two_creators_left_half_migrated_is_finished(tmp_path: Path) -> None:
    """Two creators migrating one new store at once (ours and a lock-free ``mlflow ui``) can
    leave it half-migrated with nobody writing it any more; a store holding no run has nothing
    to lose, so its migration is finished instead of the run being refused. (A half-migrated
    store with runs is still reported with its repair: the test above.)"""
    from twrl_exp import store

    db = tmp_path / "mlflow.db"
    make_half_migrated(db, with_run=False)
    client = store.open_client(f"sqlite:///{db}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    with sqlite3.connect(db) as connection:
        listed = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        assert not [name for (name,) in listed if name.startswith("_alembic_tmp_")]


def repair_command(uri: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twrl_exp.store", "repair", uri],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(project_root())},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_repair_refuses_what_is_not_a_store_in_one_sentence(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n" * 100)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE mine (x INTEGER)")
    cases = {
        notes: "is not an MLflow store (SQLite says: file is not a database)",
        folder: "is a folder",
        tmp_path / "missing.db": "is not an existing file",
        other: "is an SQLite database but not an MLflow store",
    }
    for db, fragment in cases.items():
        result = repair_command(f"sqlite:///{db}", tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert fragment in result.stderr
    assert notes.read_text().startswith("my notes")  # untouched
    assert not (tmp_path / "missing.db").exists()


def test_a_deleted_experiment_is_refused_with_how_to_restore_it(tmp_path: Path) -> None:
    """A user deleted the env's experiment in the UI: a new run neither brings it (and its
    deleted runs) back behind their back nor records anything; the sentence says how to restore
    it or record elsewhere, and the restore command it prints works."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run("train", uri, tmp_path).returncode == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("CartPole-v1").experiment_id
    client.delete_experiment(experiment)
    folders = set((tmp_path / "outputs").rglob("*"))
    refused = run("train", uri, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    restore = f"MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id {experiment}"
    assert f"was deleted; restore it with `{restore}`" in refused.stderr
    assert "monitor.mlflow.experiment=<name>" in refused.stderr
    assert client.get_experiment(experiment).lifecycle_stage == "deleted"
    runs = client.search_runs([experiment], run_view_type=ViewType.ALL)
    assert [r.info.lifecycle_stage for r in runs] == ["deleted"]
    assert set((tmp_path / "outputs").rglob("*")) == folders  # nothing left by the refused run
    restored = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), *restore.split()[2:]],
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert restored.returncode == 0, restored.stderr
    assert client.get_experiment(experiment).lifecycle_stage == "active"
    assert run("train", uri, tmp_path).returncode == 0


def test_a_read_only_project_is_read_but_not_written(tmp_path: Path) -> None:
    """The project (its store and output folders) on a read-only disk: the leaderboard and
    evaluate work (they only read: no migration, no lock file, no reaping; on a writable store
    they change no byte of it either), while train and evaluate log=true are refused in one
    sentence each."""
    from tests.integration.disks import remount_read_only, tmpfs

    with tmpfs(tmp_path / "project", "64m") as project:
        db = project / "mlflow.db"
        uri = f"sqlite:///{db}"
        assert run("train", uri, project).returncode == 0
        with contextlib.closing(sqlite3.connect(db)) as connection:  # closed: no file held
            ((run_id,),) = connection.execute("SELECT run_uuid FROM runs").fetchall()
        (project / "mlflow.db.lock").unlink()
        before = db.read_bytes()

        def read(cwd: Path) -> list[subprocess.CompletedProcess[str]]:
            env = {**os.environ, "PYTHONPATH": str(project_root()), "MLFLOW_TRACKING_URI": uri}
            commands = [
                ["-m", "twrl_exp.leaderboard", "--html", str(tmp_path / "lb.html")],
                ["-m", "twrl_exp.evaluate", f"run_id={run_id}", "episodes=2"],
            ]
            return [
                subprocess.run(
                    [sys.executable, *args],
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                for args in commands
            ]

        for result in read(tmp_path):  # a writable store: readers write nothing to it
            assert result.returncode == 0, result.stderr
        assert db.read_bytes() == before
        assert not (project / "mlflow.db.lock").exists()

        remount_read_only(project)
        board, evaluated = read(project)
        assert board.returncode == 0, board.stderr
        assert "reinforce/categorical/mlp" in board.stdout
        assert evaluated.returncode == 0, evaluated.stderr
        assert f"run {run_id}: mean return" in evaluated.stdout
        refused = [
            run("train", uri, project),
            subprocess.run(
                [sys.executable, "-m", "twrl_exp.evaluate", f"run_id={run_id}", "log=true"],
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(project_root()), "MLFLOW_TRACKING_URI": uri},
                capture_output=True,
                text=True,
                timeout=300,
            ),
        ]
        for result in refused:
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "is read-only, so the run's output folder" in refused[0].stderr
        assert "hydra.run.dir" in refused[0].stderr
        assert f"The MLflow store {uri} is not writable" in refused[1].stderr
        page = subprocess.run(  # its page cannot go into the read-only project either
            [sys.executable, "-m", "twrl_exp.leaderboard"],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(project_root()), "MLFLOW_TRACKING_URI": uri},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert page.returncode == 2
        assert "Traceback" not in page.stderr
        assert "give --html (or --markdown) a writable path, or --no-html." in page.stderr
