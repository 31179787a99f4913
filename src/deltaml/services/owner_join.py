"""An owner's consent on chain: to exactly the request the aggregator offers.

Split from :mod:`deltaml.services.owner`: the checks of an offer against the request
the contract holds, and the ``join`` transaction, a refusal in one plain line either way.
"""

from __future__ import annotations

from typing import Any

from deltaml.crypto import PublicKey
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import LedgerError, ProtocolError
from deltaml.ledger.base import Ledger, RequestState, RequestStatus
from deltaml.protocol.rules import request_hash

__all__ = ["join_offer"]


def join_offer(
    ledger: Ledger, rid: int, offer: dict[str, Any], aggregator: str
) -> tuple[RequestState, bytes, bytes]:
    """Join request ``rid`` on chain, only if its spec hashes to the committed spec hash,
    its Paillier key is the committed key, it is still open and names ``aggregator``
    (if given). Returns the request's state, the spec hash and the key fingerprint."""
    cid = int(offer["chain_request_id"])
    state = ledger.request(cid)
    spec_hash = request_hash(offer["spec"], offer["requirements"])
    key_hash = key_fingerprint(PublicKey.from_dict(offer["public_key"]))
    problems = []
    if state.status != RequestStatus.OPEN:
        problems.append(_not_open(state.status))
    if state.spec_hash != spec_hash:
        problems.append("the offered spec is not the one committed on chain")
    if state.key_hash != key_hash:
        problems.append("the offered Paillier key is not the one committed on chain")
    if aggregator and state.aggregator.lower() != aggregator.lower():
        problems.append("the request on chain names another aggregator")
    if not problems and not ledger.has_joined(cid):
        try:
            ledger.join(cid, spec_hash, key_hash)
        except LedgerError as exc:
            if exc.error_name != "WrongStatus":
                raise
            # started (or ended) between the check above and the transaction
            problems.append(_not_open(ledger.request(cid).status))
    if problems:
        raise ProtocolError(f"request {rid} (on chain {cid}) refused: " + "; ".join(problems))
    return state, spec_hash, key_hash


def _not_open(status: RequestStatus) -> str:
    return f"it is {status.name} on chain, not OPEN"
