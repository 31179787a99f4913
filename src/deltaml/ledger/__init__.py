"""Money on Ethereum: the Marketplace contract, its artifact and a Python client.

``import deltaml.ledger`` is cheap: it loads the interface (:class:`Ledger`,
:class:`Role`, :class:`RequestStatus`, :class:`RequestState`) and the payment
rule (:mod:`deltaml.ledger.payouts`), never web3. The web3 implementation and the
chain backends load on first use of their names::

    from deltaml.ledger import Web3Ledger, connect, deploy_marketplace

    chain = connect(None)                      # embedded in-process EVM (default)
    chain = connect("http://127.0.0.1:8545")   # or any JSON-RPC node, e.g. anvil

Modules: ``base`` (interface), ``payouts`` (the rule), ``artifact`` (compiled
contract), ``chain`` (backends and ``connect``), ``embedded`` (the in-process
chain), ``web3_ledger`` (implementation), ``transactions`` (signing and sending),
``seats`` (the calls with Merkle proofs), ``events`` (a request's history),
``reverts`` (errors from every backend), ``accounts`` (keystores, dev-chain
funding). Seats and payouts are Merkle roots on chain: see
:mod:`deltaml.protocol.merkle`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deltaml.ledger.base import (
    DEFAULT_CHALLENGE_WINDOW_S,
    Ledger,
    LedgerEvent,
    Receipt,
    RequestState,
    RequestStatus,
    Role,
)
from deltaml.ledger.payouts import METRIC_SCALE, Payouts, compute_payouts, scale_metric

if TYPE_CHECKING:
    from deltaml.ledger.accounts import (
        fund_from_dev_account,
        generate_account,
        load_keystore,
        save_keystore,
    )
    from deltaml.ledger.chain import Chain, RpcChain, connect
    from deltaml.ledger.embedded import EmbeddedChain
    from deltaml.ledger.web3_ledger import Web3Ledger, deploy_marketplace

_LAZY = {
    "Chain": "deltaml.ledger.chain",
    "EmbeddedChain": "deltaml.ledger.embedded",
    "RpcChain": "deltaml.ledger.chain",
    "connect": "deltaml.ledger.chain",
    "Web3Ledger": "deltaml.ledger.web3_ledger",
    "deploy_marketplace": "deltaml.ledger.web3_ledger",
    "generate_account": "deltaml.ledger.accounts",
    "save_keystore": "deltaml.ledger.accounts",
    "load_keystore": "deltaml.ledger.accounts",
    "fund_from_dev_account": "deltaml.ledger.accounts",
}

__all__ = [
    "DEFAULT_CHALLENGE_WINDOW_S",
    "METRIC_SCALE",
    "Chain",
    "EmbeddedChain",
    "Ledger",
    "LedgerEvent",
    "Payouts",
    "Receipt",
    "RequestState",
    "RequestStatus",
    "Role",
    "RpcChain",
    "Web3Ledger",
    "compute_payouts",
    "connect",
    "deploy_marketplace",
    "fund_from_dev_account",
    "generate_account",
    "load_keystore",
    "save_keystore",
    "scale_metric",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
