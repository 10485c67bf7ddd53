"""``python -m twrl_exp.store repair <uri>``: finish a migration an interrupted process left
half-done, or salvage a damaged SQLite store (every row that can still be read, indexes rebuilt,
the damaged file kept beside it), then mark the runs its ended processes left RUNNING."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from twrl_exp import store


def repair(uri: str) -> str:
    """Finish a migration that an interrupted process left half-done, or salvage a damaged
    database (SQLite stores): what was done, in one sentence."""
    import sqlite3

    db = store.sqlite_path(uri)
    if db is None or not db.is_file():
        what = "a folder" if db is not None and db.is_dir() else "not an existing file"
        raise store.StoreError(
            f"repair needs an existing sqlite:/// store file, and {uri} is {what}; give the "
            "MLflow database's URI (sqlite:///path/to/mlflow.db)."
        )
    store._quiet_migrations()
    try:
        with contextlib.closing(sqlite3.connect(db)) as connection:
            check = [row[0] for row in connection.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        if "malformed" not in str(exc):
            raise store.store_error(uri, exc) from exc
        check = [str(exc)]
    salvaged = "" if check == ["ok"] else _salvage(db, uri)
    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine_with_retry

    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        tables = {n for (n,) in connection.execute("SELECT name FROM sqlite_master")}
        if "experiments" not in tables:
            raise store.StoreError(
                f"{uri} is an SQLite database but not an MLflow store (it has no experiments "
                "table); give the MLflow database's URI."
            )
        leftovers = [name for name in tables if name.startswith("_alembic_tmp_")]
        for name in leftovers:
            connection.execute(f'DROP TABLE "{name}"')
    engine = create_sqlalchemy_engine_with_retry(uri)
    try:
        _upgrade_db(engine)
    finally:
        engine.dispose()
    _forget(uri)
    client = store._open(uri)
    reaped = store.reap_orphans(
        client, uri, note="; the store was damaged and salvaged" if salvaged else ""
    )
    done = [salvaged] if salvaged else []
    done.append(f"dropped {len(leftovers)} leftover table(s), schema upgraded")
    if reaped:
        done.append(f"{len(reaped)} run(s) left RUNNING by ended processes marked FAILED")
    return f"{uri} repaired ({'; '.join(done)})."


def _forget(uri: str) -> None:
    """Drop this process's clients of ``uri`` and MLflow's pooled connections to it (which still
    read the file a salvage replaced)."""
    store._open.cache_clear()
    store._open_read_only.cache_clear()
    with contextlib.suppress(Exception):  # MLflow's engine cache: private, may change
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        engine = SqlAlchemyStore._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()


def _salvage(db: Path, uri: str) -> str:
    """Replace a damaged database by a copy of every row that can still be read (indexes are
    rebuilt, a damaged page loses only its own rows), keeping the damaged file beside it; what
    was done."""
    import sqlite3

    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = db.with_name(f"{db.name}.damaged-{stamp}")
    fresh = db.with_name(f"{db.name}.salvaged-{stamp}")
    try:
        with contextlib.closing(sqlite3.connect(fresh.absolute().as_uri(), uri=True)) as new:
            new.execute("ATTACH DATABASE ? AS damaged", (f"{db.absolute().as_uri()}?mode=ro",))
            schema = new.execute(
                "SELECT type, name, sql FROM damaged.sqlite_master WHERE sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite%' ORDER BY type = 'table' DESC"
            ).fetchall()
            lost = 0
            for kind, name, sql in schema:
                if kind == "table":
                    new.execute(sql)
                    lost += _copy_rows(new, name)
                else:  # indexes are built anew from the rows
                    with contextlib.suppress(sqlite3.Error):
                        new.execute(sql)
            with contextlib.suppress(sqlite3.Error):  # AUTOINCREMENT counters, if any
                new.execute("INSERT INTO sqlite_sequence SELECT * FROM damaged.sqlite_sequence")
            new.commit()
    except sqlite3.Error as exc:
        fresh.unlink(missing_ok=True)
        raise store.StoreError(
            f"The MLflow store {uri} is damaged beyond what can be read back ({exc}); restore it "
            "from a backup."
        ) from exc
    os.replace(db, kept)
    os.replace(fresh, db)
    rows = f", {lost} block(s) of rows unreadable and lost" if lost else ""
    return f"salvaged what the damaged file held{rows}; the damaged file is kept as {kept.name}"


def _copy_rows(connection: Any, table: str) -> int:
    """Copy ``table`` from ``damaged``; the number of 256-row blocks that could not be read."""
    import sqlite3

    info = connection.execute(f'PRAGMA damaged.table_xinfo("{table}")').fetchall()
    columns = ", ".join(f'"{row[1]}"' for row in info if row[6] == 0)  # not generated ones
    copy = f'INSERT INTO main."{table}" ({columns}) SELECT {columns} FROM damaged."{table}"'
    try:
        connection.execute(copy)
        return 0
    except sqlite3.DatabaseError:
        connection.execute(f'DELETE FROM main."{table}"')
    try:  # block by block along the rowids: a damaged page costs only its own rows
        (last,) = connection.execute(f'SELECT max(rowid) FROM damaged."{table}"').fetchone()
    except sqlite3.DatabaseError:
        return 1
    lost = 0
    for first in range(0, (last or 0) + 1, 256):
        try:
            connection.execute(f"{copy} WHERE rowid BETWEEN ? AND ?", (first, first + 255))
        except sqlite3.DatabaseError:
            lost += 1
    return lost


def main(argv: list[str] | None = None) -> int:
    """``python -m twrl_exp.store repair <uri>``: finish an interrupted schema migration, or
    salvage a damaged database."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "repair":
        print("usage: python -m twrl_exp.store repair sqlite:///path/to/mlflow.db", file=sys.stderr)
        return 2
    try:
        print(repair(args[1]))
    except store.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # whatever else SQLite or the migrations say: one sentence
        why = store.redact(store.root_cause(exc))
        print(
            f"error: {store.redact(args[1])} could not be repaired ({why}); restore it from a "
            "backup.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # python -m twrl_exp.store repair <uri>
    raise SystemExit(main())
