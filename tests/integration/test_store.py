"""The store as the entry points meet it: broken, unwritable, or left half-migrated."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
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
@pytest.mark.parametrize("store", ["not-a-database", "unwritable"])
def test_a_bad_store_is_one_sentence_at_every_entry_point(
    tmp_path: Path, kind: str, store: str
) -> None:
    if store == "not-a-database":
        db = tmp_path / "notes.db"
        db.write_text("my notes, not a database\n" * 100)
        fragment = "is not an MLflow store"
    else:
        db = tmp_path / "afile" / "mlflow.db"  # a folder under a plain file cannot exist
        (tmp_path / "afile").write_text("x")
        fragment = "cannot be created"
    result = run(kind, f"sqlite:///{db}", tmp_path)
    if kind == "leaderboard" and store == "unwritable":  # it only reads: there is no store
        assert result.returncode == 0
        assert "there is no MLflow store" in result.stdout
        return
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "outputs").exists()
    assert not (tmp_path / "multirun").exists() or not any((tmp_path / "multirun").rglob("*.pt"))


def make_half_migrated(db: Path) -> None:
    """A store at an old schema with the temporary table an interrupted batch migration
    leaves behind: what two processes migrating one new store at once used to produce."""
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
        alembic.upgrade(config, revisions[-2])
    with sqlite3.connect(db) as connection:
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
