"""The node databases' schema, as Alembic migrations (``versions/``).

Every node applies them when it opens its store (:class:`deltaml.services.store.Store`),
and an operator can run them on their own with ``deltaml db upgrade``. A database
made before the migrations existed (tables by ``create_all``, no ``alembic_version``)
is that of revision ``0001`` and is stamped so before upgrading: its rows stay.

A schema change is a new file in ``versions/`` whose ``down_revision`` is the
previous head, written by hand with ``alembic.op`` (never from the live tables,
so an old revision always builds the schema it built when it was written).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

#: The revision whose schema ``create_all`` made before the migrations existed.
BASELINE = "0001"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["engine"] = engine
    return config


def head() -> str:
    """The newest revision this version of deltaml knows."""
    script = ScriptDirectory(str(Path(__file__).parent))
    revision = script.get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision (``None``: no migration applied yet)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to :func:`head`; ``(revision before, revision after)``."""
    before = current(engine)
    config = _config(engine)
    if before is None and sa.inspect(engine).has_table("documents"):
        command.stamp(config, BASELINE)  # made by create_all: revision 0001's schema
        before = BASELINE
    command.upgrade(config, "head")
    return before, head()
