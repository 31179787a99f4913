"""The ``postgres_url`` fixture gives a working PostgreSQL, and explains when it cannot."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from postgres_testkit import find_postgres_or_explain


def test_postgres_url_answers_a_query(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    assert "@127.0.0.1:" in postgres_url
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("select 1")).scalar_one() == 1
            assert (
                connection.execute(text("select current_database()")).scalar_one()
                == (postgres_url.rsplit("/", 1)[1])
            )
    finally:
        engine.dispose()


def test_missing_postgres_skips_unless_it_is_required(tmp_path: Path) -> None:
    missing = {"DELTAML_POSTGRES_BIN": str(tmp_path / "no-postgres-here")}
    bin_dir, reason, required = find_postgres_or_explain(missing)
    assert (bin_dir, required) == (None, False)
    assert "apt-get install postgresql" in reason
    bin_dir, reason, required = find_postgres_or_explain(
        {**missing, "DELTAML_REQUIRE_POSTGRES": "1"}
    )
    assert (bin_dir, required) == (None, True)
    assert reason.startswith("DELTAML_REQUIRE_POSTGRES=1")
