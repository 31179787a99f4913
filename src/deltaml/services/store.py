"""Each service's state, in a database through SQLAlchemy: SQLite by default, PostgreSQL by URL.

Everything a service needs to go on after a restart is here, written before it is
acted on: the aggregator's registry, requests, offers, the queue of work for the
parties (with the replies), training checkpoints and the nonces of signed
requests; the nodes' documents (their datasets, requests, keys, history).

Only ciphertexts, public values and a party's own secrets are stored, each in the
party's own database; nothing is logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from deltaml.errors import DeltaMLValueError
from deltaml.services import migrations

metadata = sa.MetaData()

owners = sa.Table(
    "owners",
    metadata,
    sa.Column("address", sa.String(42), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("min_reward_wei", sa.String(80), nullable=False),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("buyer", sa.String(42), nullable=False, index=True),
    sa.Column("chain_request_id", sa.BigInteger, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("requirements", sa.JSON, nullable=False),
    sa.Column("public_key", sa.JSON, nullable=False),
    sa.Column("initial_model", sa.JSON, nullable=False),
    sa.Column("deposit_wei", sa.String(80), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

offers = sa.Table(
    "offers",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.String(42), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("dataset", sa.String(200), nullable=False, default=""),
    sa.Column("role", sa.String(20), nullable=False, default=""),
    sa.Column("updated_at", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer, nullable=False, index=True),
    sa.Column("party", sa.String(42), nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(10), nullable=False, index=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("taken_at", sa.Float, nullable=True),
    sa.Column("done_at", sa.Float, nullable=True),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("request_id", sa.Integer, primary_key=True),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer, nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("address", sa.String(42), primary_key=True),
    sa.Column("nonce", sa.String(130), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("namespace", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def database_url(url: str | None, default_file: str | Path) -> str:
    """``url`` (e.g. ``DATABASE_URL``), or an SQLite file at ``default_file``."""
    if url:
        return url
    path = Path(default_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Store:
    """A database with this module's tables, brought to the newest migration when opened."""

    def __init__(self, url: str) -> None:
        try:
            if url.startswith("sqlite"):
                self.engine: Engine = sa.create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            migrations.upgrade(self.engine)
        except sa.exc.ArgumentError as exc:
            raise DeltaMLValueError(f"not a database URL: {url!r}") from exc
        except sa.exc.OperationalError as exc:
            raise DeltaMLValueError(
                f"cannot open the database: {str(exc.orig).strip().splitlines()[0]}"
            ) from exc
        self.url = url

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- documents (the nodes' state) ---------------------------------------------------
    def put(self, namespace: str, key: str, value: Any) -> None:
        row = {"namespace": namespace, "key": key, "value": value, "updated_at": time.time()}
        with self.begin() as conn:
            done = conn.execute(
                documents.update()
                .where(documents.c.namespace == namespace, documents.c.key == key)
                .values(value=value, updated_at=row["updated_at"])
            ).rowcount
            if not done:
                conn.execute(documents.insert().values(**row))

    def get(self, namespace: str, key: str, default: Any = None) -> Any:
        with self.begin() as conn:
            value = conn.execute(
                sa.select(documents.c.value).where(
                    documents.c.namespace == namespace, documents.c.key == key
                )
            ).scalar_one_or_none()
        return default if value is None else value

    def items(self, namespace: str) -> list[tuple[str, Any]]:
        with self.begin() as conn:
            rows = conn.execute(
                sa.select(documents.c.key, documents.c.value)
                .where(documents.c.namespace == namespace)
                .order_by(documents.c.updated_at)
            ).all()
        return [(r.key, r.value) for r in rows]

    def delete(self, namespace: str, key: str) -> None:
        with self.begin() as conn:
            conn.execute(
                documents.delete().where(documents.c.namespace == namespace, documents.c.key == key)
            )

    # -- nonces (replay protection that survives a restart) ----------------------------
    def remember(self, address: str, nonce: str, expires_at: float) -> bool:
        """Record a signed request's nonce; False if it was seen (a replay), atomically:
        of two concurrent calls with the same pair exactly one returns True."""
        try:
            with self.begin() as conn:
                conn.execute(nonces.delete().where(nonces.c.expires_at < time.time()))
                seen = conn.execute(
                    sa.select(nonces.c.nonce).where(
                        nonces.c.address == address, nonces.c.nonce == nonce
                    )
                ).first()
                if seen is not None:
                    return False
                conn.execute(
                    nonces.insert().values(address=address, nonce=nonce, expires_at=expires_at)
                )
        except sa.exc.IntegrityError:
            # The same nonce inserted at the same moment by a concurrent request: the
            # primary key let one through, this one is the replay.
            return False
        return True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (status pages, long-polls) never block the writer; a crash loses
    # nothing that was committed.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
