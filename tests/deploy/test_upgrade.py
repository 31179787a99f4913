"""Upgrading a node (deploy/README.md): a database made before the migrations upgrades.

tests/deploy/data/store-before-migrations.sql is a node's SQLite database as the image
before the Alembic migrations made it (tables by ``create_all``, no ``alembic_version``).
A node's volume holds that file; after ``deltaml db upgrade`` — which the README's
upgrade runs, and which a node also does when it opens its store — the data is there
and the schema is at the newest revision. No containers: the same command and the same
code the image runs.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from deltaml.services.store import Store

BEFORE = Path(__file__).resolve().parent / "data" / "store-before-migrations.sql"
OWNER = "0x" + "ab" * 20


def _old_volume(folder: Path) -> str:
    path = folder / "owner.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(BEFORE.read_text())
    return f"sqlite:///{path}"


def _deltaml(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deltaml", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _revision(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT version_num FROM alembic_version")
            return [str(r) for r in conn.execute(query).scalars()]
    finally:
        engine.dispose()


def test_a_volume_from_before_the_migrations_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    url = _old_volume(tmp_path)
    assert "alembic_version" not in sa.inspect(sa.create_engine(url)).get_table_names()

    done = _deltaml("db", "upgrade", "--database", url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    revision = _revision(url)
    assert len(revision) == 1

    # A second upgrade has nothing to do; the node opens the store as it is.
    again = _deltaml("db", "upgrade", "--database", url)
    assert again.returncode == 0, again.stderr
    assert _revision(url) == revision

    store = Store(url)
    try:
        assert store.get("datasets", "diabetes") == {"path": "/data/diabetes.csv", "rows": 117}
        assert store.get("requests", "1")["status"] == "FINISHED"
        with store.begin() as conn:
            names = conn.execute(sa.text("SELECT name FROM owners")).scalars().all()
            kinds = conn.execute(sa.text("SELECT kind FROM events")).scalars().all()
        assert names == ["owner 1"]
        assert kinds == ["round"]
        # Replay protection survived the upgrade too.
        assert store.remember(OWNER, "n1", 4102444800.0) is False
    finally:
        store.close()
    assert _revision(url) == revision


def test_opening_an_old_volume_upgrades_it(tmp_path: Path) -> None:
    """A node started on an old volume without `db upgrade` first migrates it itself."""
    url = _old_volume(tmp_path)
    Store(url).close()
    assert len(_revision(url)) == 1
    assert _deltaml("db", "upgrade", "--database", url).returncode == 0
