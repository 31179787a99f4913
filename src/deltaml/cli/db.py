"""``deltaml db upgrade|current``: a node database's schema migrations, for operators.

A node applies the migrations itself when it opens its store; these commands let an
operator do it (or look) before starting a new version, e.g. against a backup.
"""

from __future__ import annotations

import argparse
from typing import Any

from deltaml.errors import DeltaMLValueError


def add_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="a node database's schema migrations (upgrade, current)")
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in [
        ("upgrade", "bring the database to this version's newest migration (keeps its rows)"),
        ("current", "print the database's migration and this version's newest"),
    ]:
        p = actions.add_parser(name, help=text, description=text)
        p.add_argument(
            "--database",
            metavar="URL",
            help=(
                "SQLAlchemy URL, e.g. sqlite:////node/owner.sqlite "
                "(default: DELTAML_DATABASE_URL, DELTAML_DATABASE_URL_FILE or DATABASE_URL)"
            ),
        )


def run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from deltaml import settings
    from deltaml.services import migrations

    url = args.database or settings.database_url()
    if not url:
        raise DeltaMLValueError(
            "which database? give --database URL or set DELTAML_DATABASE_URL(_FILE)"
        )
    try:
        engine = sa.create_engine(url)
    except sa.exc.ArgumentError:
        raise DeltaMLValueError("--database: not a database URL") from None
    try:
        if args.action == "current":
            print(f"database: {migrations.current(engine) or 'none'}; newest: {migrations.head()}")
            return 0
        before, after = migrations.upgrade(engine)
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0]
        raise DeltaMLValueError(f"cannot open the database: {reason}") from None
    finally:
        engine.dispose()
    print(f"at {after}" if before == after else f"upgraded from {before or 'empty'} to {after}")
    return 0
