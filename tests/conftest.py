"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deltaml.crypto.paillier import TEST_KEYS_ENV
from deltaml.ledger.anvil import AnvilProcess
from deltaml.ledger.node_process import EmbeddedNodeProcess

# The whole test session, and the services it starts as child processes, may use
# small Paillier keys (512-1024 bits): fast, and refused everywhere else. A test that
# shows the refusal removes this with monkeypatch.delenv.
os.environ[TEST_KEYS_ENV] = "1"

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path:
# make the shared helpers importable (`ledger_testkit`, `postgres_testkit`,
# `services_testkit`).
sys.path.insert(0, str(Path(__file__).resolve().parent / "ledger"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "services"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger_testkit import find_anvil_or_explain

from postgres_testkit import PostgresCluster, find_postgres_or_explain


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """A real anvil node on 127.0.0.1 for the whole session (skipped if not installed,
    unless DELTAML_REQUIRE_ANVIL=1)."""
    binary, reason, required = find_anvil_or_explain()
    if binary is None:
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    with AnvilProcess(binary) as node:
        yield node.url


@pytest.fixture(scope="session")
def embedded_node_url() -> Iterator[str]:
    """The embedded chain served over JSON-RPC (``python -m deltaml.ledger.node``) in a
    subprocess for the whole session; needs nothing beyond the Python packages."""
    with EmbeddedNodeProcess() as node:
        yield node.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/deltaml_test``) of
    an empty database in a throwaway PostgreSQL cluster, for the whole session.

    Skipped when the server tools are not installed, unless DELTAML_REQUIRE_POSTGRES=1
    (CI), which makes that a failure. Tests share the database: each should use its
    own tables or schema, or clean up after itself.
    """
    bin_dir, reason, required = find_postgres_or_explain()
    if bin_dir is None:
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    with PostgresCluster(bin_dir) as cluster:
        yield cluster.url
