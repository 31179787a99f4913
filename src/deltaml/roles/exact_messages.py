"""The exact solve's messages (``solver: exact``; see :mod:`deltaml.roles.exact`).

Their vectors hold **residues mod n** — the plaintext ring the exact solve works in
(:mod:`deltaml.learning.exact_solve`) — not fixed-point numbers: exponent 0, bound 0
(:func:`ring_vector`). Matrices travel row-major.

=====================  ==========  ======================================================
message                signer      what the signature binds
=====================  ==========  ======================================================
ExactSystem            trainer     its ``Enc(H_i)`` (d²) and ``Enc(g_i)`` (d), sealed
ExactMasked            trainer     its masked vector ``Enc([H_i R; g_i + H_i s; H_i c;
                                   cᵀg_i] + z_i)`` (z_i: its zero-sum share)
ExactSolution          buyer       ``Enc(u)`` and the digest of the masked sum it solved
=====================  ==========  ======================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gmpy2

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.evidence.signatures import vector_ref
from deltaml.roles.messages import Message


def ring_vector(public_key: PublicKey, ciphertexts: list[int] | tuple[int, ...]) -> EncryptedVector:
    """Raw ciphertexts of residues mod n as a vector (exponent 0, no fixed-point bound)."""
    return EncryptedVector(public_key, [gmpy2.mpz(c) for c in ciphertexts], 0, 0)


@dataclass(frozen=True)
class ExactRequest(Message):
    """Aggregator → trainer (never the buyer): the mask ``L`` (row-major), ``D``, the check
    vector ``c`` and the trainer's zero-sum share of the masked vector, as hex residues
    (see :class:`deltaml.learning.exact_solve.TrainerMask`)."""

    public_key: PublicKey
    precision_bits: int
    matrix: tuple[str, ...]
    scale: tuple[str, ...]
    check: tuple[str, ...]
    share: tuple[str, ...]


@dataclass(frozen=True)
class ExactSystem(Message):
    system: EncryptedVector
    signature: str = ""


@dataclass(frozen=True)
class ExactMasked(Message):
    masked: EncryptedVector
    signature: str = ""


@dataclass(frozen=True)
class ExactReply(Message):
    """Trainer → aggregator: its two signed messages."""

    system: ExactSystem
    masked: ExactMasked


@dataclass(frozen=True)
class ExactSolveRequest(Message):
    """Aggregator → buyer: every seated trainer's signed masked message. The buyer checks
    the signatures, sums them itself and decrypts only the sum's solve part."""

    trainers: tuple[str, ...]
    masked: tuple[ExactMasked, ...]
    n_weights: int


@dataclass(frozen=True)
class ExactSolution(Message):
    solution: EncryptedVector
    masked_digest: str
    signature: str = ""


@dataclass(frozen=True)
class ExactModel(Message):
    """Aggregator → buyer, after settlement: ``Enc(w_j) = Enc(u_j)^{D_j}`` (sealed in the
    transcript). The buyer checks ``vᵀw = t`` with the check part it kept."""

    model: EncryptedVector


def _system(msg: ExactSystem) -> dict[str, Any]:
    return {"system": vector_ref(msg.system)}


def _masked(msg: ExactMasked) -> dict[str, Any]:
    return {"masked": vector_ref(msg.masked)}


def _solution(msg: ExactSolution) -> dict[str, Any]:
    return {"solution": vector_ref(msg.solution), "masked_sum": msg.masked_digest}


#: Evidence bodies of the exact solve's signed messages (see roles.evidence).
EXACT_BODIES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "ExactSystem": _system,
    "ExactMasked": _masked,
    "ExactSolution": _solution,
}
