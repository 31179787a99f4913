"""Chain selection, the shipped artifact, the anvil fixture's guard, import cost."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_testkit import REPO_ROOT, find_anvil_or_explain, reverts

from deltaml.errors import DeltaMLValueError
from deltaml.ledger import chain as chain_module
from deltaml.ledger.artifact import load_artifact
from deltaml.ledger.chain import connect
from deltaml.ledger.embedded import EmbeddedChain


def test_embedded_is_the_default() -> None:
    for setting in (None, "", "embedded"):
        chain = connect(setting)
        assert isinstance(chain, EmbeddedChain)
        assert chain.is_dev_chain
        assert len(chain.dev_accounts()) >= 1


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(DeltaMLValueError, match="unsupported chain URL"):
        connect("ftp://127.0.0.1:8545")
    with pytest.raises(DeltaMLValueError, match="unsupported chain URL"):
        connect("127.0.0.1:8545")


def test_an_unreachable_node_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with reverts("ChainUnreachable"):
        connect(f"http://127.0.0.1:{port}", timeout_s=2)


def test_time_only_moves_forward() -> None:
    with pytest.raises(DeltaMLValueError):
        EmbeddedChain().advance_time(-1)


def test_the_rpc_backend_is_a_chain(anvil_url: str) -> None:
    chain = connect(anvil_url)
    try:
        assert isinstance(chain, chain_module.RpcChain)
        assert chain.chain_id == 31337 and chain.is_dev_chain
        before = chain.now()
        assert chain.advance_time(3600) >= before + 3600
    finally:
        chain.close()


def test_importing_the_ledger_package_does_not_load_web3() -> None:
    code = (
        "import sys, deltaml.ledger as l; "
        "assert 'web3' not in sys.modules and 'eth_tester' not in sys.modules, 'web3 loaded'; "
        "l.compute_payouts(10, 2, 1, [1], 1); l.Role.BUYER; "
        "assert 'web3' not in sys.modules; "
        "l.Web3Ledger; assert 'web3' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_shipped_artifact_matches_the_pinned_compiler() -> None:
    artifact = load_artifact()
    package = json.loads((REPO_ROOT / "package.json").read_text())
    solc = package["devDependencies"]["solc"]
    assert artifact.compiler_version.startswith(solc + "+commit.")
    assert artifact.evm_version == "cancun"
    assert artifact.bytecode.startswith("0x60") and len(artifact.deployed_bytecode) > 1000
    # EIP-170: deployed code must stay under 24 576 bytes
    assert (len(artifact.deployed_bytecode) - 2) // 2 < 24_576
    errors = {e["name"] for e in artifact.error_entries()}
    assert {"NotBuyer", "NotAggregator", "AlreadyWithdrawn", "Reentrancy"} <= errors


def test_missing_anvil_skips_unless_it_is_required(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-anvil-here")
    binary, reason, required = find_anvil_or_explain({"DELTAML_ANVIL_BIN": missing})
    assert (binary, required) == (None, False)
    assert "npm ci" in reason
    binary, reason, required = find_anvil_or_explain(
        {"DELTAML_ANVIL_BIN": missing, "DELTAML_REQUIRE_ANVIL": "1"}
    )
    assert (binary, required) == (None, True)
    assert reason.startswith("DELTAML_REQUIRE_ANVIL=1")
    fake = tmp_path / "anvil"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_anvil_or_explain({"DELTAML_ANVIL_BIN": str(fake)})[0] == fake
