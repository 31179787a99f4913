"""The model buyer's node: holds the Paillier private key and pays.

- :mod:`.node` — :class:`BuyerNode`: requests, the protocol work, its views;
- :mod:`.keys` — the private keys sealed at rest;
- :mod:`.settlement` — verify, approve or dispute, withdraw or reclaim;
- :mod:`.api` — the local API (:func:`create_app`).
"""

from deltaml.services.buyer.api import create_app
from deltaml.services.buyer.keys import SCRYPT_LOG2_N, open_key, seal_key, sealed_cost
from deltaml.services.buyer.node import (
    MAX_REPEATS,
    SPEC_DEFAULTS,
    SPEC_FIELDS,
    BuyerConfig,
    BuyerNode,
    parse_request_spec,
)
from deltaml.services.buyer.settlement import Settlement

__all__ = [
    "MAX_REPEATS",
    "SCRYPT_LOG2_N",
    "SPEC_DEFAULTS",
    "SPEC_FIELDS",
    "BuyerConfig",
    "BuyerNode",
    "Settlement",
    "create_app",
    "open_key",
    "parse_request_spec",
    "seal_key",
    "sealed_cost",
]
