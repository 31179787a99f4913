"""A throwaway PostgreSQL cluster for the store tests (the ``postgres_url`` fixture).

The services keep their state through SQLAlchemy: SQLite by default, PostgreSQL
when ``DATABASE_URL`` says so, and the store tests run on both. The cluster is
made here with the server's own tools — ``initdb`` into a temporary folder,
``pg_ctl start`` on a free port of 127.0.0.1 with its unix socket in that folder
and trust authentication — and removed at the end of the session, so a test run
never touches a PostgreSQL the machine already runs.

PostgreSQL refuses to run as root, and this machine and CI run as root: then the
tools run as the ``postgres`` system user (made by Debian's ``postgresql``
package) through ``runuser``, in a folder that user owns.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from deltaml.ledger.anvil import free_port

PG_USER = "postgres"  # the cluster's superuser, and the system user run as under root
DATABASE = "deltaml_test"
_TOOLS = ("initdb", "pg_ctl")


def _has_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in _TOOLS)


def _version_key(folder: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` → ``(15,)``, so the newest installed wins."""
    return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)


def postgres_bin_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Folder with ``initdb`` and ``pg_ctl``: ``$DELTAML_POSTGRES_BIN``, else the
    newest of Debian's ``/usr/lib/postgresql/*/bin``, else the one on ``PATH``
    (Debian puts neither tool on it); ``None`` when there is none."""
    configured = environ.get("DELTAML_POSTGRES_BIN")
    if configured:
        return Path(configured) if _has_tools(Path(configured)) else None
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for folder in debian:
        if _has_tools(folder):
            return folder
    on_path = shutil.which("initdb", path=environ.get("PATH"))
    if on_path:
        folder = Path(on_path).resolve().parent
        if _has_tools(folder):
            return folder
    return None


def find_postgres_or_explain(
    environ: Mapping[str, str] = os.environ,
) -> tuple[Path | None, str, bool]:
    """(folder of the server tools, why they are unusable, whether that is a failure).

    Missing tools skip the PostgreSQL tests, unless ``DELTAML_REQUIRE_POSTGRES=1``
    (as in CI), where they fail the run instead.
    """
    required = environ.get("DELTAML_REQUIRE_POSTGRES") == "1"
    folder = postgres_bin_dir(environ)
    reason = ""
    if folder is None:
        reason = (
            "PostgreSQL server tools (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
            "or on PATH: `apt-get install postgresql`, or set DELTAML_POSTGRES_BIN"
        )
    elif os.geteuid() == 0 and not _user_exists(PG_USER):
        folder = None
        reason = (
            f"running as root, and there is no '{PG_USER}' system user to run PostgreSQL as "
            "(PostgreSQL refuses to run as root; Debian's postgresql package creates the user)"
        )
    if folder is None and required:
        reason = f"DELTAML_REQUIRE_POSTGRES=1 but {reason}"
    return folder, reason, required


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PostgresCluster:
    """A fresh PostgreSQL cluster in a temporary folder, on 127.0.0.1 only.

    Parameters
    ----------
    bin_dir:
        Folder of ``initdb`` and ``pg_ctl`` (:func:`postgres_bin_dir`).
    database:
        The database to create for the tests.

    Attributes
    ----------
    url:
        SQLAlchemy URL of ``database``, with the psycopg 3 driver.
    """

    def __init__(self, bin_dir: Path, *, database: str = DATABASE, timeout_s: int = 60) -> None:
        self.bin_dir = bin_dir
        self.database = database
        self.timeout_s = timeout_s
        self.as_root = os.geteuid() == 0
        # not pytest's tmp_path: its folders are private to root, where the
        # postgres user could not reach them
        self.root = Path(tempfile.mkdtemp(prefix="deltaml-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = 0
        self.running = False
        if self.as_root:
            user = pwd.getpwnam(PG_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.url = ""

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, args: Sequence[str], what: str) -> None:
        """Run a server tool (as the postgres user under root); raise with its
        output if it fails."""
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            if shutil.which("runuser"):
                command = ["runuser", "-u", PG_USER, "--", *command]
            else:
                command = ["su", "-s", "/bin/sh", PG_USER, "-c", shlex.join(command)]
        done = subprocess.run(
            command,
            cwd=self.root,  # a folder the postgres user may enter
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.timeout_s + 30,
            check=False,
        )
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            raise RuntimeError(
                f"{what} failed ({shlex.join(command)}, exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}{log}".rstrip()
            )

    def start(self) -> None:
        """``initdb``, ``pg_ctl start`` (waiting until it accepts connections), and
        create the database."""
        self._run(
            [
                "initdb",
                "--pgdata",
                str(self.data_dir),
                "--username",
                PG_USER,
                "--auth",
                "trust",  # no passwords: only this machine's 127.0.0.1 can connect
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            "initdb",
        )
        attempts = 3  # a free port can be taken between choosing and binding it
        for attempt in range(attempts):
            self.port = free_port()
            options = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                # durability is pointless for a cluster deleted at the end
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
            try:
                self._run(
                    [
                        "pg_ctl",
                        "--pgdata",
                        str(self.data_dir),
                        "--log",
                        str(self.log_file),
                        "--wait",
                        "--timeout",
                        str(self.timeout_s),
                        "--options",
                        " ".join(options),
                        "start",
                    ],
                    "pg_ctl start",
                )
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                continue
            self.running = True
            break
        self._create_database()
        self.url = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{self.database}"

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` and delete the folder."""
        try:
            if self.running:
                self._run(
                    ["pg_ctl", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait", "stop"],
                    "pg_ctl stop",
                )
                self.running = False
        finally:
            if not self.running:
                shutil.rmtree(self.root, ignore_errors=True)
