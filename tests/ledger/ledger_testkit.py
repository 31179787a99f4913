"""Helpers shared by the ledger tests: an anvil process, a deployed market with
parties, and an assertion for contract errors."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from deltaml.errors import LedgerError
from deltaml.ledger.accounts import fund_from_dev_account, generate_account
from deltaml.ledger.anvil import anvil_binary
from deltaml.ledger.artifact import ContractArtifact
from deltaml.ledger.base import Role
from deltaml.ledger.chain import Chain
from deltaml.ledger.web3_ledger import Web3Ledger, deploy_contract, send_transaction
from deltaml.protocol.merkle import PayoutClaim, SeatProof

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
ETH = 10**18
SPEC = b"\x5e" * 32
KEY = b"\x4b" * 32
EVIDENCE = b"\xe7" * 32
REASON = b"\xd1" * 32


def find_anvil_or_explain(environ: Mapping[str, str] = os.environ) -> tuple[Path | None, str, bool]:
    """(binary, reason it is missing, whether a missing binary is a failure).

    A missing binary skips the anvil backend, unless ``DELTAML_REQUIRE_ANVIL=1``
    (as in CI), where it fails the run instead.
    """
    binary = anvil_binary(environ)
    required = environ.get("DELTAML_REQUIRE_ANVIL") == "1"
    if binary is not None:
        return binary, "", required
    reason = "anvil not found: run `npm ci` at the repository root, or set DELTAML_ANVIL_BIN"
    if required:
        reason = f"DELTAML_REQUIRE_ANVIL=1 but {reason}"
    return None, reason, required


@contextmanager
def reverts(name: str, *args: object) -> Iterator[pytest.ExceptionInfo[LedgerError]]:
    """Expect a ``LedgerError`` named ``name`` (with exactly ``args`` if given)."""
    with pytest.raises(LedgerError) as info:
        yield info
    error = info.value
    assert error.error_name == name, f"expected {name}{args}, got {error!r}"
    if args:
        assert error.args_ == args, f"expected {name}{args}, got {name}{error.args_}"


def load_test_artifact(name: str) -> ContractArtifact:
    return ContractArtifact.from_file(CONTRACTS_DIR / f"{name}.json")


class Market:
    """One Marketplace deployed on ``chain``, and parties acting on it.

    The contract and its standing parties live for the whole session (one per
    backend); each test opens its own requests, so tests do not interfere, and
    money checks compare balances before and after.
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.attacker_artifact = load_test_artifact("ReentrantPayee")
        self.rejecting_artifact = load_test_artifact("RejectingPayee")
        deployer = self.new_account(10 * ETH)
        self.ledger = Web3Ledger.deploy(
            chain,
            deployer,
            extra_abis=[self.attacker_artifact.abi, self.rejecting_artifact.abi],
        )
        self.deploy_gas = self.ledger.last_receipt.gas_used if self.ledger.last_receipt else 0
        self.buyer = self.party(Role.BUYER, fund_wei=100_000 * ETH)
        self.aggregator = self.party(Role.AGGREGATOR)
        self.other_aggregator = self.party(Role.AGGREGATOR)
        # resolves disputes; registered for nothing: an arbiter needs no role
        self.arbiter = self.party()
        self._owners: list[Web3Ledger] = []

    def new_account(self, fund_wei: int = 10 * ETH) -> Any:
        account = generate_account()
        fund_from_dev_account(self.chain, account.address, fund_wei, demo=True)
        return account

    def party(self, *roles: Role, fund_wei: int = 10 * ETH) -> Web3Ledger:
        """A new funded account, registered for ``roles``."""
        ledger = self.ledger.for_account(self.new_account(fund_wei))
        for role in roles:
            ledger.register(role)
        return ledger

    def owners(self, n: int) -> list[Web3Ledger]:
        """``n`` registered data owners (created once, reused by later tests)."""
        missing = n - len(self._owners)
        if missing > 0:
            accounts = [generate_account() for _ in range(missing)]
            fund_from_dev_account(self.chain, [a.address for a in accounts], ETH, demo=True)
            for account in accounts:
                # a fixed gas limit skips estimation: these are set-up, not under test
                Web3Ledger(
                    self.chain, self.ledger.contract_address, account, gas_limit=100_000
                ).register(Role.DATA_OWNER)
                self._owners.append(self.ledger.for_account(account))
        return self._owners[:n]

    def open_request(
        self,
        deposit_wei: int = ETH,
        *,
        duration_s: int = 3600,
        window_s: int = 600,
        buyer: Web3Ledger | None = None,
        aggregator: Web3Ledger | None = None,
        arbiter: Web3Ledger | None = None,
    ) -> int:
        buyer = buyer or self.buyer
        aggregator = aggregator or self.aggregator
        arbiter = arbiter or self.arbiter
        deadline = self.chain.now() + duration_s
        return buyer.create_request(
            aggregator.account,
            deposit_wei,
            deadline,
            window_s,
            SPEC,
            arbiter=arbiter.account,
            key_hash=KEY,
        )

    def join_all(self, request_id: int, owners: list[Web3Ledger]) -> None:
        """Every owner consents to the request's spec and key."""
        for owner in owners:
            owner.join(request_id, SPEC, KEY)

    def started_request(
        self, n_trainers: int, n_validators: int, deposit_wei: int = ETH, **kwargs: Any
    ) -> tuple[int, list[Web3Ledger], list[Web3Ledger]]:
        owners = self.owners(n_trainers + n_validators)
        trainers, validators = owners[:n_trainers], owners[n_trainers:]
        request_id = self.open_request(deposit_wei, **kwargs)
        self.join_all(request_id, owners)
        self.aggregator.start(
            request_id, [t.account for t in trainers], [v.account for v in validators]
        )
        return request_id, trainers, validators

    def finished_request(
        self,
        n_trainers: int,
        n_validators: int,
        deposit_wei: int = ETH,
        *,
        initial_metric: int = 10_000_000,
        final_metric: int = 5_000_000,
        contributions: list[int] | None = None,
        **kwargs: Any,
    ) -> tuple[int, list[Web3Ledger], list[Web3Ledger]]:
        """A started request whose aggregator posted its final result."""
        request_id, trainers, validators = self.started_request(
            n_trainers, n_validators, deposit_wei, **kwargs
        )
        weights = contributions if contributions is not None else [1] * n_trainers
        self.aggregator.finish(request_id, initial_metric, final_metric, weights, EVIDENCE)
        return request_id, trainers, validators

    def approve_all(
        self, request_id: int, trainers: list[Web3Ledger], validators: list[Web3Ledger]
    ) -> None:
        """The buyer and every seat approve: the request settles at the last one."""
        for party in [self.buyer, *trainers, *validators]:
            party.approve(request_id)

    def claim_of(self, request_id: int, account: str) -> PayoutClaim:
        """The payout claim (amount and Merkle proof) of ``account``, from the book
        the aggregator's ``start`` and ``finish`` left with every ledger here."""
        book = self.ledger._books[request_id]
        return book.claim(self.ledger.binding(request_id), account)

    def seat_proof_of(self, request_id: int, account: str) -> SeatProof:
        book = self.ledger._books[request_id]
        return book.seat_proof(self.ledger.binding(request_id), account)

    def contract(self, artifact: ContractArtifact, address: str) -> Any:
        return self.chain.w3.eth.contract(address=address, abi=list(artifact.abi))

    def transact(self, account: Any, fn: Any, value_wei: int = 0) -> Any:
        """Send a call to any contract (an attacker) and map its errors."""
        return send_transaction(self.chain, account, fn, self.ledger.decoder, value_wei=value_wei)[
            0
        ]

    def deploy(self, artifact: ContractArtifact, account: Any) -> str:
        return deploy_contract(self.chain, account, artifact, self.ledger.contract_address)[0]
