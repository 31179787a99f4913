"""Fixtures shared by every test folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deltaml.ledger.anvil import AnvilProcess

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent / "ledger"))

from ledger_testkit import find_anvil_or_explain


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
