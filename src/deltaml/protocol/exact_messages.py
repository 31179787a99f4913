"""The exact solve's messages (``solver: exact``; the parties: :mod:`deltaml.roles.exact`).

Their vectors hold **residues mod n** — the plaintext ring the exact solve works in
(:mod:`deltaml.learning.exact_solve`) — not fixed-point numbers: exponent 0, bound 0
(:func:`ring_vector`). Matrices travel row-major.

=====================  ==========  ======================================================
message                signer      what the signature binds
=====================  ==========  ======================================================
ExactSystem            trainer     its ``Enc(H_i)`` (d²) and ``Enc(g_i)`` (d), sealed
ExactMasked            trainer     its masked solve part ``Enc([L H_i D; L g_i] + z_i)``
ExactCheck             trainer     its check part ``Enc([H_i c; cᵀg_i] + z'_i)`` (``z_i``,
                                   ``z'_i``: its zero-sum share), shown to the buyer
                                   only with the model
ExactSolution          buyer       ``Enc(u)`` and the digest of the masked sum it solved
ExactSolveCheck        buyer       with contributions: the proof that its solution's
                                   check column holds (``learning/exact_parts.py``)
=====================  ==========  ======================================================

Their transcript records are :mod:`deltaml.protocol.records`' ``Exact*`` kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import gmpy2

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.protocol.messages import Message

__all__ = [
    "ExactCheck",
    "ExactCheckRequest",
    "ExactMasked",
    "ExactModel",
    "ExactReply",
    "ExactRequest",
    "ExactSolution",
    "ExactSolveCheck",
    "ExactSolveRequest",
    "ExactSystem",
    "ring_vector",
]


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
    #: With contributions (:mod:`deltaml.learning.exact_parts`): every trainer's offsets
    #: ``t_1 … t_m`` (row-major), ``σ``, this trainer's check coefficient and its column.
    offsets: tuple[str, ...] = ()
    sigma: tuple[str, ...] = ()
    coefficient: str = ""
    index: int = -1


@dataclass(frozen=True)
class ExactSystem(Message):
    system: EncryptedVector
    signature: str = ""


@dataclass(frozen=True)
class ExactMasked(Message):
    masked: EncryptedVector
    #: With contributions: the digest of the ``D`` and offsets it was sent
    #: (:func:`deltaml.learning.exact_parts.mask_digest`), which the unmasking must use.
    mask_digest: str = ""
    signature: str = ""


@dataclass(frozen=True)
class ExactCheck(Message):
    check: EncryptedVector
    signature: str = ""


@dataclass(frozen=True)
class ExactReply(Message):
    """Trainer → aggregator: its three signed messages."""

    system: ExactSystem
    masked: ExactMasked
    check: ExactCheck


@dataclass(frozen=True)
class ExactSolveRequest(Message):
    """Aggregator → buyer: every seated trainer's signed masked message. The buyer checks
    the signatures, sums them itself and decrypts only the sum's solve part."""

    trainers: tuple[str, ...]
    masked: tuple[ExactMasked, ...]
    n_weights: int
    #: ``det(L)·det(D) mod n`` (hex): with ``det(M)`` the buyer has ``det(H)``, a multiple
    #: of the model's denominator, to evaluate the model before it is delivered.
    mask_det: str = ""


@dataclass(frozen=True)
class ExactSolution(Message):
    solution: EncryptedVector
    masked_digest: str
    signature: str = ""


@dataclass(frozen=True)
class ExactCheckRequest(Message):
    """Aggregator → buyer, after its signed solution (contributions only): the check
    column's weights ``λ₀ … λ_m`` and shift ``τ`` (hex), secret until then."""

    weights: tuple[str, ...]
    shift: tuple[str, ...]


@dataclass(frozen=True)
class ExactSolveCheck(Message):
    """Buyer → aggregator: the randomness proving that ``Enc(x_c − λ₀x₀ − Σλ_i x_i − τ)``
    of the solution it names decrypts to 0 (hex)."""

    solution_digest: str
    weights: tuple[str, ...]
    shift: tuple[str, ...]
    randomness: tuple[str, ...]
    signature: str = ""


@dataclass(frozen=True)
class ExactModel(Message):
    """Aggregator → buyer, after settlement: ``Enc(w_j) = Enc(u_j)^{D_j}`` (sealed in the
    transcript) and every seated trainer's signed check part, which the buyer sums to
    check ``(Hc)ᵀw = cᵀg``. (Given with the solve, the check part would tell the buyer
    one projection ``(Hc)ᵀw`` of the model before delivery.)"""

    model: EncryptedVector
    trainers: tuple[str, ...]
    checks: tuple[ExactCheck, ...]
