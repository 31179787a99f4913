"""A training request's life on the chain: escrow before training, settlement after.

:class:`OnChainRequest` drives the Marketplace contract through the
:class:`~deltaml.ledger.Ledger` interface the way the parties do: everyone
registers itself; the buyer escrows the payment and names the aggregator, an
arbiter and the fingerprint of its Paillier key; each owner joins the request
with its own account, consenting to exactly that spec and key; the aggregator
seats the owners that joined before training, posts the evaluated metrics and
the final result with contributions (each carrying the hash of the evidence
transcript) after it. When the evidence verified, the buyer and every seat
approve and the request settles at once; when it did not, the buyer disputes
and the arbiter (which re-runs the verification) voids the result, so the buyer
gets its deposit back. Every payee pulls its own credit. What the chain pays is
then compared with :func:`deltaml.ledger.payouts.compute_payouts` on the same
inputs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deltaml.errors import LedgerError
from deltaml.ledger.base import DEFAULT_CHALLENGE_WINDOW_S, Ledger, RequestStatus, Role
from deltaml.ledger.payouts import Payouts

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from deltaml.evidence.transcript import ChainBinding

#: Gas money each demo account gets from the dev chain.
DEMO_FUNDING_WEI = 10**21
DEFAULT_DEADLINE_S = 24 * 3600
#: What the buyer's dispute names when the evidence did not verify.
UNVERIFIED_REASON = hashlib.sha256(b"deltaml: the evidence transcript did not verify").digest()


@dataclass
class ChainSettlement:
    """What happened on chain, for the report."""

    chain: str
    contract: str
    request_id: int
    status: str
    #: Party id → wei it withdrew (the buyer's refund under ``"buyer"``).
    withdrawn_wei: dict[str, int] = field(default_factory=dict)
    transactions: int = 0
    gas_used: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "chain": self.chain,
            "contract": self.contract,
            "request_id": self.request_id,
            "status": self.status,
            "withdrawn_wei": dict(self.withdrawn_wei),
            "transactions": self.transactions,
            "gas_used": self.gas_used,
            "seconds": round(self.seconds, 4),
        }


def spec_hash(spec: Mapping[str, object]) -> bytes:
    """SHA-256 of the request's parameters in canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).digest()


class OnChainRequest:
    """One request on a fresh Marketplace deployment, acted on by each party's own key.

    ``accounts`` maps party ids (``"buyer"``, ``"aggregator"``, the owners' ids)
    to their keys; an ``"arbiter"`` key is created when none is given.
    """

    def __init__(
        self,
        chain_url: str | None,
        accounts: Mapping[str, LocalAccount],
        *,
        challenge_window_s: int = DEFAULT_CHALLENGE_WINDOW_S,
    ) -> None:
        from deltaml.ledger import Web3Ledger, connect, fund_from_dev_account, generate_account

        t0 = time.perf_counter()
        self._chain = connect(chain_url)
        self.chain_name = chain_url or "embedded"
        self.challenge_window_s = challenge_window_s
        self._accounts = dict(accounts)
        self._accounts.setdefault("arbiter", generate_account())
        addresses = [str(a.address) for a in self._accounts.values()]
        fund_from_dev_account(self._chain, addresses, DEMO_FUNDING_WEI, demo=True)
        deployer = Web3Ledger.deploy(self._chain, self._accounts["aggregator"])
        self._ledgers: dict[str, Ledger] = {
            pid: deployer.for_account(acct) for pid, acct in self._accounts.items()
        }
        self.request_id = -1
        self.transactions = 1
        self.gas_used = deployer.last_receipt.gas_used if deployer.last_receipt else 0
        self.seconds = time.perf_counter() - t0

    def _tx(self, party: str, method: str, *args: object) -> object:
        result = getattr(self._ledgers[party], method)(*args)
        self._count(party)
        return result

    def _count(self, party: str) -> None:
        """Add the party's last transaction to the totals."""
        ledger = self._ledgers[party]
        self.transactions += 1
        if ledger.last_receipt is not None:
            self.gas_used += ledger.last_receipt.gas_used

    def address(self, party: str) -> str:
        return str(self._accounts[party].address)

    def binding(self) -> ChainBinding:
        """Where the request is escrowed: what its transcript's final record names."""
        from deltaml.evidence.transcript import ChainBinding

        contract = self._ledgers["buyer"].contract_address
        return ChainBinding(self._chain.chain_id, contract, self.request_id)

    def open(
        self,
        deposit_wei: int,
        request_spec: Mapping[str, object],
        trainers: Sequence[str],
        validators: Sequence[str],
        *,
        key_hash: bytes,
    ) -> int:
        """Registration, escrow, consent and start: everything before the first round.

        ``key_hash`` is the fingerprint of the buyer's Paillier key
        (:func:`deltaml.crypto.paillier.key_fingerprint`); every owner joins with
        its own account to exactly this spec and key before it is seated.
        """
        t0 = time.perf_counter()
        self._tx("buyer", "register", Role.BUYER)
        self._tx("aggregator", "register", Role.AGGREGATOR)
        for oid in [*trainers, *validators]:
            self._tx(oid, "register", Role.DATA_OWNER)
        now = self._ledgers["buyer"].now()
        digest = spec_hash(request_spec)
        self.request_id = rid = int(
            self._ledgers["buyer"].create_request(
                self.address("aggregator"),
                deposit_wei,
                now + DEFAULT_DEADLINE_S,
                self.challenge_window_s,
                digest,
                arbiter=self.address("arbiter"),
                key_hash=key_hash,
            )
        )
        self._count("buyer")
        for oid in [*trainers, *validators]:
            self._tx(oid, "join", rid, digest, key_hash)
        self._tx(
            "aggregator",
            "start",
            self.request_id,
            [self.address(t) for t in trainers],
            [self.address(v) for v in validators],
        )
        self.seconds += time.perf_counter() - t0
        return self.request_id

    def close(
        self,
        metrics: Mapping[int, int],
        initial_metric: int,
        final_metric: int,
        contribution_weights: Sequence[int],
        evidence_hash: bytes,
        evidence_verified: bool,
        expected: Payouts,
        trainers: Sequence[str],
        validators: Sequence[str],
    ) -> ChainSettlement:
        """Post the results; on verified evidence the buyer and every seat approve
        (settled at once), otherwise the buyer disputes and the arbiter voids the
        result; then every payee withdraws."""
        t0 = time.perf_counter()
        rid = self.request_id
        receipts = self._ledgers["aggregator"].post_result(
            rid, metrics, initial_metric, final_metric, list(contribution_weights), evidence_hash
        )
        self.transactions += len(receipts)
        self.gas_used += sum(r.gas_used for r in receipts)
        withdrawn: dict[str, int] = {}
        if evidence_verified:
            for party in ["buyer", *trainers, *validators]:
                self._tx(party, "approve", rid)
        else:
            self._tx("buyer", "dispute", rid, UNVERIFIED_REASON)
            # the arbiter re-runs the verification, which fails again: void
            self._tx("arbiter", "resolve", rid, False)
        for party in ["buyer", "aggregator", *trainers, *validators]:
            if self._ledgers[party].claimable(rid) > 0:
                withdrawn[party] = int(self._tx(party, "withdraw", rid))  # type: ignore[call-overload]
        if evidence_verified:
            paid = {
                **expected.by_party(trainers, validators, "aggregator"),
                "buyer": expected.refund,
            }
            mismatched = {p for p in paid if paid[p] != withdrawn.get(p, 0)}
            if mismatched:
                raise LedgerError(
                    "PayoutMismatch",
                    tuple(sorted(mismatched)),
                    "the chain paid differently from the payment rule for: "
                    + ", ".join(sorted(mismatched)),
                )
        status = self._ledgers["buyer"].request(rid).status
        self.seconds += time.perf_counter() - t0
        return ChainSettlement(
            chain=self.chain_name,
            contract=self._ledgers["buyer"].contract_address,
            request_id=rid,
            status=RequestStatus(status).name,
            withdrawn_wei=withdrawn,
            transactions=self.transactions,
            gas_used=self.gas_used,
            seconds=self.seconds,
        )
