r"""The exact solve's phases as the parties run them, timed apart (see ``exact_solve``).

:func:`prepare` is everything that does not depend on the data, which the parties do
while the request is being accepted: the aggregator draws its mask ``L, D``, the check
vector ``c``, the trainers' zero-sum shares and the randomizers of its unmasking; each
trainer draws the randomizers of its messages (``r^n mod n²``, the costly part of an
encryption). :func:`train` is the rest: the trainers' messages, the aggregator's sums,
the buyer's masked solve, the unmasking and the buyer's checked decryption of the model.
The protocol run (:mod:`deltaml.roles.exact`) does the same steps between the parties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np

from deltaml.crypto.paillier import PublicKey
from deltaml.learning.exact_solve import (
    EncryptedSystem,
    ExactBuyer,
    Mask,
    TrainerMask,
    columns_of,
    draw_factors,
    encrypt_system,
    masked_length,
    precision_for,
    random_check,
    random_mask,
    split_masked,
    sum_ciphertexts,
    sum_systems,
    system_factor_count,
    trainer_masked_system,
    unmask,
    zero_sum_shares,
)
from deltaml.learning.models import QuadraticTerms


@dataclass(frozen=True)
class Preparation:
    """What the parties compute before the data is needed (the mask stays the aggregator's)."""

    precision_bits: int
    #: Models solved together (the columns of ``G``).
    columns: int
    mask: Mask = field(repr=False)
    trainer_masks: tuple[TrainerMask, ...] = field(repr=False)
    trainer_factors: tuple[tuple[gmpy2.mpz, ...], ...] = field(repr=False)
    unmask_factors: tuple[gmpy2.mpz, ...] = field(repr=False)


def prepare(
    public_key: PublicKey,
    d: int,
    trainers: int,
    precision_bits: int | None = None,
    mask: Mask | None = None,
    columns: int = 1,
) -> Preparation:
    mask = mask or random_mask(public_key, d)
    check = random_check(public_key, d)
    shares = zero_sum_shares(public_key, trainers, masked_length(d, columns))
    per_trainer = system_factor_count(d, columns) + masked_length(d, columns)
    return Preparation(
        precision_bits or precision_for(public_key.key_bits, d),
        columns,
        mask,
        tuple(TrainerMask(mask, check, share) for share in shares),
        tuple(tuple(draw_factors(public_key, per_trainer)) for _ in range(trainers)),
        tuple(draw_factors(public_key, d * columns)),
    )


@dataclass(frozen=True)
class TrainerJob:
    terms: QuadraticTerms
    public_key: PublicKey
    precision_bits: int
    mask: TrainerMask
    factors: tuple[gmpy2.mpz, ...]


def trainer_messages(job: TrainerJob) -> tuple[EncryptedSystem, tuple[int, ...]]:
    """One trainer's two messages: its ``Enc(H_i), Enc(g_i)`` and its masked vector."""
    d = len(job.terms.hessian)
    split = system_factor_count(d, columns_of(job.terms))
    system = encrypt_system(job.terms, job.public_key, job.precision_bits, job.factors[:split])
    masked = trainer_masked_system(
        job.terms, job.public_key, job.precision_bits, job.mask, job.factors[split:]
    )
    return system, masked


@dataclass(frozen=True)
class ExactOutcome:
    weights: np.ndarray
    #: The summed ``Enc(H)``, ``Enc(g)`` (recomputable from the trainers' messages).
    total: EncryptedSystem
    #: The model mod n, as the buyer decrypted it (for the residual check).
    w_mod: tuple[int, ...]
    masked_sum: tuple[int, ...] = field(repr=False)
    encrypted_u: tuple[int, ...] = field(repr=False)
    encrypted_w: tuple[int, ...] = field(repr=False)


def train(
    terms: Sequence[QuadraticTerms],
    public_key: PublicKey,
    buyer: ExactBuyer,
    prep: Preparation,
) -> ExactOutcome:
    """The data-dependent phases, in protocol order."""
    jobs = [
        TrainerJob(t, public_key, prep.precision_bits, tm, f)
        for t, tm, f in zip(terms, prep.trainer_masks, prep.trainer_factors, strict=True)
    ]
    messages = [trainer_messages(job) for job in jobs]
    total = sum_systems([s for s, _ in messages], public_key)
    masked_sum = sum_ciphertexts([v for _, v in messages], public_key)
    solve_part, check_part = split_masked(masked_sum, total.size, prep.columns)
    enc_u = buyer.solve_masked(solve_part)
    enc_w = unmask(enc_u, prep.mask, public_key, prep.unmask_factors)
    weights, w_mod = buyer.final_weights(enc_w, check_part, prep.columns)
    return ExactOutcome(weights, total, w_mod, masked_sum, enc_u, enc_w)
