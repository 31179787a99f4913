"""The aggregator's steps for each trainer's part of the exact model (``solver: exact``
with ``contributions``; the construction: :mod:`deltaml.learning.exact_parts`).

1. every trainer's :class:`ExactRequest` carries the offsets, ``σ``, its check
   coefficient and its column (:func:`with_parts`); each trainer signs the digest of the
   ``D`` and offsets it was sent, which must be the aggregator's (:func:`check_digests`);
2. after the buyer's signed solution the aggregator reveals the check column's weights
   and shift; the buyer proves the check holds (``ExactSolveCheck``, public, recomputed
   by verify from the sealed solution);
3. the aggregator unmasks every part ``Enc(m·u_i)`` (``ExactParts``, sealed with the ``D``
   and offsets: verify recomputes them) — the members' models of the contributions
   game, measured after the exact model's metric like the rounds' round-one models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.crypto.paillier import check_decryption
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import vector_digest, vector_ref
from deltaml.learning.exact_parts import (
    PartsSecret,
    check_vector,
    mask_digest,
    unmask_parts,
)
from deltaml.learning.exact_solve import Mask
from deltaml.protocol import records
from deltaml.protocol.exact_messages import (
    ExactCheckRequest,
    ExactMasked,
    ExactRequest,
    ExactSolution,
    ExactSolveCheck,
    ring_vector,
)
from deltaml.roles.exact import _hex

if TYPE_CHECKING:
    from deltaml.roles.aggregator import Aggregator


def with_parts(requests: Sequence[ExactRequest], secret: PartsSecret) -> list[ExactRequest]:
    """Every trainer's request with the parts' values (trainer ``i`` owns column ``i``)."""
    if not requests:
        return []
    n = requests[0].public_key.n
    offsets = _hex([v for t in secret.offsets for v in t])
    sigma = _hex(secret.sigma(n))
    return [
        dataclasses.replace(
            request,
            offsets=offsets,
            sigma=sigma,
            coefficient=f"{secret.for_trainer(i, n).coefficient:x}",
            index=i,
        )
        for i, request in enumerate(requests)
    ]


def check_digests(
    trainers: Sequence[str], masked: Sequence[ExactMasked], mask: Mask, secret: PartsSecret
) -> None:
    """Each trainer signed the digest of the ``D`` and offsets the unmasking will use."""
    expected = mask_digest(mask.scale, secret.offsets)
    for oid, message in zip(trainers, masked, strict=True):
        if message.mask_digest != expected:
            raise ProtocolError(f"{oid} signed the digest of another mask")


def checked_parts(
    agg: Aggregator,
    solution: ExactSolution,
    mask: Mask,
    secret: PartsSecret,
    multiplier: int,
) -> list[EncryptedVector]:
    """Reveal the check to the buyer, check its proof, unmask and record every part."""
    ev, key = agg.evidence, solution.solution.public_key
    weights, shift = _hex(secret.weights), _hex(secret.shift)
    reply = agg.transport.request(agg.buyer_id, ExactCheckRequest(weights, shift))
    proof = ev.accept(agg.buyer_id, reply, ExactSolveCheck, sealed=False)
    digest = vector_digest(solution.solution)
    if (proof.solution_digest, proof.weights, proof.shift) != (digest, weights, shift):
        raise ProtocolError("the buyer's check answers another solution or check")
    enc_x = [int(c) for c in solution.solution.ciphertexts]
    if not proves_zero(check_vector(enc_x, secret.weights, secret.shift, key), proof, key):
        raise ProtocolError("the buyer's solution fails its check column")
    parts = [
        ring_vector(key, part)
        for part in unmask_parts(enc_x, secret.offsets, mask.scale, multiplier, key)
    ]
    kept = ring_vector(key, [*mask.scale, *(v for t in secret.offsets for v in t)])
    ev.record(
        records.ExactParts(
            solution=digest,
            multiplier=multiplier,
            secrets=vector_ref(kept),
            parts=[vector_ref(v) for v in parts],
        ),
        sealed=[kept, *parts],
    )
    return parts


def proves_zero(combined: Sequence[int], proof: ExactSolveCheck, key: PublicKey) -> bool:
    """Every ciphertext of the check is proven (its randomness) to decrypt to 0."""
    if len(proof.randomness) != len(combined):
        return False
    try:
        rs = [int(r, 16) for r in proof.randomness]
    except ValueError:
        return False
    return all(check_decryption(key, c, 0, r) for r, c in zip(rs, combined, strict=True))
