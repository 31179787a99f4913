"""Small test keys, one pair per test module (512 bits: fast, not secure)."""

from __future__ import annotations

import pytest

from deltaml.crypto import PrivateKey, PublicKey, generate_keypair


@pytest.fixture(scope="module")
def keys512() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(512, allow_test_keys=True)


@pytest.fixture(scope="module")
def keys768() -> tuple[PublicKey, PrivateKey]:
    return generate_keypair(768, allow_test_keys=True)
