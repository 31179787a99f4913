"""Fixtures: every test that takes ``chain`` or ``market`` runs once per backend.

- ``embedded``: eth-tester on py-evm, in process; always.
- ``anvil``: a real node started here from ``node_modules`` (or
  ``$DELTAML_ANVIL_BIN``) on a free port of 127.0.0.1 and stopped by its pid.
  Skipped when the binary is missing, unless ``DELTAML_REQUIRE_ANVIL=1`` (CI),
  which turns the skip into a failure.
- ``node``: the embedded chain served over JSON-RPC by ``python -m
  deltaml.ledger.node`` (as ``deltaml demo`` shares one chain between processes)
  in a subprocess, stopped by its pid; always, as it needs only Python packages.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deltaml.ledger.chain import Chain, RpcChain
from deltaml.ledger.embedded import EmbeddedChain

# The suite runs with --import-mode=importlib, which puts no test folder on
# sys.path: make the shared helpers importable as `ledger_testkit`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger_testkit import Market

BACKENDS = ["embedded", "anvil", "node"]


@pytest.fixture(scope="session", params=BACKENDS)
def chain(request: pytest.FixtureRequest) -> Iterator[Chain]:
    backend: Chain
    if request.param == "embedded":
        backend = EmbeddedChain()
    elif request.param == "anvil":
        backend = RpcChain(request.getfixturevalue("anvil_url"))
    else:
        backend = RpcChain(request.getfixturevalue("embedded_node_url"))
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="session")
def market(chain: Chain) -> Market:
    return Market(chain)
