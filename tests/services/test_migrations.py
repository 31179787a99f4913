"""The node databases' migrations: from nothing and from the schema before them, on
SQLite and PostgreSQL, to exactly the tables the code uses; ``deltaml db``."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from deltaml.cli import main
from deltaml.services import migrations
from deltaml.services.store import Store, metadata

#: A node's database as ``create_all`` made it before the migrations (SQLite DDL).
BEFORE = Path(__file__).resolve().parents[1] / "deploy" / "data" / "store-before-migrations.sql"


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.sqlite'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = "mig_" + secrets.token_hex(4)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_an_empty_database_gets_exactly_the_tables_the_code_uses(empty_url: str) -> None:
    store = Store(empty_url)
    try:
        assert migrations.current(store.engine) == migrations.head()
        assert _differences(store.engine) == []
        store.put("datasets", "a", {"rows": 3})
        assert store.get("datasets", "a") == {"rows": 3}
    finally:
        store.close()


def test_opening_twice_changes_nothing(empty_url: str) -> None:
    Store(empty_url).close()
    store = Store(empty_url)
    try:
        assert migrations.upgrade(store.engine) == (migrations.head(), migrations.head())
    finally:
        store.close()


def test_a_database_from_before_the_migrations_is_stamped_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(BEFORE.read_text())
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    assert migrations.current(engine) is None
    before, after = migrations.upgrade(engine)
    assert (before, after) == (migrations.BASELINE, migrations.head())
    assert _differences(engine) == []
    engine.dispose()
    store = Store(url)
    try:
        assert store.get("datasets", "diabetes") == {"path": "/data/diabetes.csv", "rows": 117}
    finally:
        store.close()


def test_db_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'n.sqlite'}"
    assert main(["db", "current", "--database", url]) == 0
    assert capsys.readouterr().out.strip() == f"database: none; newest: {migrations.head()}"
    assert main(["db", "upgrade", "--database", url]) == 0
    assert capsys.readouterr().out.strip() == f"upgraded from empty to {migrations.head()}"
    assert main(["db", "upgrade", "--database", url]) == 0
    assert capsys.readouterr().out.strip() == f"at {migrations.head()}"


def test_db_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DELTAML_DATABASE_URL", "DELTAML_DATABASE_URL_FILE", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["db", "upgrade"]) == 1
    assert "give --database URL" in capsys.readouterr().err
    assert main(["db", "upgrade", "--database", "nonsense"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a database URL" in err
    missing = tmp_path / "no" / "such" / "dir" / "x.sqlite"
    assert main(["db", "upgrade", "--database", f"sqlite:///{missing}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open the database" in err
