"""A run's transcript and its request on a real chain, as the parties would make them.

A small run (512-bit key, five owners: three trainers, two validators, three rounds)
is simulated with fixed accounts and no chain; :class:`Escrow` then does on a deployed
Marketplace what the parties do around it — the buyer escrows with the key
fingerprint and spec hash of the run, the owners join, the aggregator seats them
and posts the final result — and the aggregator completes the transcript's final
record with the chain binding (as the recorder does when the writer names a chain)
and signs it. Tests then change one thing, as a dishonest aggregator would.

Imported by ``tests/attacks/test_verify_*.py`` and ``tests/cli/test_verify_cli.py``
(``tests/`` is on ``sys.path``, see ``tests/conftest.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from deltaml.crypto import PublicKey
from deltaml.crypto.paillier import key_fingerprint
from deltaml.evidence.signatures import canonical_json, sign_body
from deltaml.evidence.transcript import ChainBinding, read_records, record_hash
from deltaml.evidence.verify import request_commitment
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.ledger.accounts import fund_from_dev_account
from deltaml.ledger.base import Role
from deltaml.ledger.web3_ledger import Web3Ledger
from deltaml.simulation import SimulationConfig, owner_ids, simulate_shares

ETH = 10**18
OWNERS = 5


@dataclass
class Run:
    """One simulated run: its transcript file, records and the parties' accounts."""

    path: Path
    records: list[dict[str, Any]]
    accounts: dict[str, Any]

    @property
    def header(self) -> dict[str, Any]:
        return dict(self.records[0]["body"])

    @property
    def final(self) -> dict[str, Any]:
        return dict(self.records[-1]["body"])

    def address(self, pid: str) -> str:
        return str(self.accounts[pid].address)

    @property
    def trainers(self) -> list[str]:
        return [self.address(t) for t in self.header["trainers"]]

    @property
    def validators(self) -> list[str]:
        return [self.address(v) for v in self.header["validators"]]

    @property
    def key_hash(self) -> bytes:
        return key_fingerprint(PublicKey.from_dict(self.header["public_key"]))

    @property
    def spec_hash(self) -> bytes:
        return request_commitment(self.header["spec"], None)


def new_accounts(**given: Any) -> dict[str, Any]:
    """Fresh accounts for the buyer, the aggregator and the owners, except those given."""
    return {
        pid: given.get(pid) or Account.create()
        for pid in ["buyer", "aggregator", *owner_ids(OWNERS)]
    }


def simulate(folder: Path, name: str, accounts: dict[str, Any], seed: int = 0) -> Run:
    """A complete honest run escrowed nowhere (its final record names no chain);
    a fresh Paillier key each time."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    path = folder / f"{name}.jsonl"
    config = SimulationConfig(
        rounds=3,
        key_bits=512,
        allow_test_keys=True,
        transcript=str(path),
        verify=False,
        chain=False,
        seed=seed,
    )
    shares = split_owners(train, OWNERS, seed=seed)
    simulate_shares(config, "linear", "regression", shares, None, accounts=accounts)
    return Run(path, read_records(path), accounts)


def bind(run: Run, binding: ChainBinding | None, path: Path) -> tuple[Path, str]:
    """``run``'s transcript with its final record naming ``binding``, signed by the
    aggregator, written to ``path`` (with the sealed ciphertexts); returns the head."""
    records = [dict(r) for r in run.records]
    final = dict(records[-1])
    body = dict(final["body"])
    body["chain"] = None if binding is None else binding.to_json()
    aggregator = run.accounts["aggregator"]
    final["body"] = body
    final["signature"] = sign_body(aggregator, body)
    final["signer"] = aggregator.address
    records[-1] = final
    path.write_text("".join(canonical_json(r).decode() + "\n" for r in records))
    sealed = run.path.with_name(run.path.name.removesuffix(".jsonl") + ".sealed.jsonl")
    target = path.with_name(path.name.removesuffix(".jsonl") + ".sealed.jsonl")
    target.write_bytes(sealed.read_bytes())
    return path, record_hash(final)


class Escrow:
    """The Marketplace at ``ledger``'s contract, and ledgers for a run's parties."""

    def __init__(self, ledger: Web3Ledger, arbiter: Any) -> None:
        self.ledger = ledger
        self.chain = ledger.chain
        self.arbiter = arbiter
        self._ledgers: dict[str, Web3Ledger] = {}

    def party(self, account: Any, role: Role | None) -> Web3Ledger:
        """A funded ledger for ``account`` (registered for ``role``, once)."""
        address = str(account.address)
        if address not in self._ledgers:
            fund_from_dev_account(self.chain, address, 1000 * ETH, demo=True)
            ledger = self.ledger.for_account(account)
            if role is not None and not ledger.has_role(address, role):
                ledger.register(role)
            self._ledgers[address] = ledger
        return self._ledgers[address]

    def open(
        self,
        run: Run,
        *,
        trainers: Sequence[Any] | None = None,
        validators: Sequence[Any] | None = None,
    ) -> int:
        """The buyer escrows for ``run``; the seats join; the aggregator seats them.

        ``trainers``/``validators`` (accounts) replace the run's seats on chain.
        """
        buyer = self.party(run.accounts["buyer"], Role.BUYER)
        aggregator = self.party(run.accounts["aggregator"], Role.AGGREGATOR)
        rid = buyer.create_request(
            aggregator.account,
            int(run.header["spec"]["deposit_wei"]),
            self.chain.now() + 3600,
            600,
            run.spec_hash,
            arbiter=str(self.arbiter.address),
            key_hash=run.key_hash,
        )
        seats_t = list(trainers) if trainers is not None else _seats(run, "trainers")
        seats_v = list(validators) if validators is not None else _seats(run, "validators")
        for account in [*seats_t, *seats_v]:
            self.party(account, Role.DATA_OWNER).join(rid, run.spec_hash, run.key_hash)
        aggregator.start(rid, [str(a.address) for a in seats_t], [str(a.address) for a in seats_v])
        return rid

    def binding(self, rid: int) -> ChainBinding:
        return ChainBinding(self.chain.chain_id, self.ledger.contract_address, rid)

    def finish(
        self,
        run: Run,
        rid: int,
        head: str,
        *,
        final_metric: int | None = None,
        contributions: list[int] | None = None,
        round_metrics: dict[int, int] | None = None,
    ) -> None:
        """The aggregator posts the final result (the run's numbers unless changed),
        after ``round_metrics`` (round: scaled metric) with ``postMetric``."""
        body = run.final
        aggregator = self.party(run.accounts["aggregator"], Role.AGGREGATOR)
        for k, metric in sorted((round_metrics or {}).items()):
            aggregator.post_metric(rid, k, metric, bytes.fromhex(head))
        aggregator.finish(
            rid,
            int(body["initial_metric"]),
            int(body["final_metric"]) if final_metric is None else final_metric,
            list(body["contribution_weights"]) if contributions is None else contributions,
            bytes.fromhex(head),
        )


def _seats(run: Run, which: str) -> list[Any]:
    return [run.accounts[pid] for pid in run.header[which]]


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
