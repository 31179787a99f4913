r"""The exact solve's phases as the parties run them, timed apart (see ``exact_solve``).

:func:`prepare` is everything that does not depend on the data, which the parties do
while the request is being accepted: the aggregator draws its mask ``R, s``, encrypts
it, and draws the randomizers it will re-randomize with; each trainer draws the
randomizers of its ``Enc(H_i)``, ``Enc(g_i)``. :func:`train` is the rest: the trainers'
messages (independent parties, so computed in parallel on the machine's cores when it
has several: :func:`map_parties`), the aggregator's sums, the buyer's masked solve,
the unmasking and the buyer's decryption of the model.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import gmpy2
import numpy as np

from deltaml.crypto.paillier import PublicKey
from deltaml.learning.exact_solve import (
    EncryptedMask,
    EncryptedSystem,
    ExactBuyer,
    Mask,
    MaskedSystem,
    draw_factors,
    encrypt_mask,
    encrypt_system,
    precision_for,
    random_mask,
    sum_masked,
    sum_systems,
    system_factor_count,
    trainer_masked_system,
    unmask,
)
from deltaml.learning.models import QuadraticTerms

T = TypeVar("T")
R = TypeVar("R")

#: Worker processes for the trainers' messages in one process (a simulation).
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class Preparation:
    """What the parties compute before the data is needed (the mask stays the aggregator's)."""

    precision_bits: int
    mask: Mask = field(repr=False)
    sent: EncryptedMask = field(repr=False)
    trainer_factors: tuple[tuple[gmpy2.mpz, ...], ...] = field(repr=False)
    sum_factors: tuple[gmpy2.mpz, ...] = field(repr=False)
    unmask_factors: tuple[gmpy2.mpz, ...] = field(repr=False)


def prepare(
    public_key: PublicKey,
    d: int,
    trainers: int,
    precision_bits: int | None = None,
    mask: Mask | None = None,
) -> Preparation:
    mask = mask or random_mask(public_key, d)
    return Preparation(
        precision_bits or precision_for(public_key.key_bits, d),
        mask,
        encrypt_mask(mask, public_key),
        tuple(tuple(draw_factors(public_key, system_factor_count(d))) for _ in range(trainers)),
        tuple(draw_factors(public_key, d * d + d)),
        tuple(draw_factors(public_key, d)),
    )


@dataclass(frozen=True)
class TrainerJob:
    terms: QuadraticTerms
    public_key: PublicKey
    precision_bits: int
    sent: EncryptedMask
    factors: tuple[gmpy2.mpz, ...]


def trainer_messages(job: TrainerJob) -> tuple[EncryptedSystem, MaskedSystem]:
    """One trainer's two messages: its signed ``Enc(H_i), Enc(g_i)`` and its masked system."""
    system = encrypt_system(job.terms, job.public_key, job.precision_bits, job.factors)
    masked = trainer_masked_system(job.terms, job.public_key, job.precision_bits, job.sent, system)
    return system, masked


class Cores:
    """This machine's cores: independent parties' work (the trainers', as on their own
    machines) and one party's independent blocks (the aggregator's unmasking rows).

    ``workers`` forked processes, started (and warmed) when the pool is made — at setup,
    like the parties' nodes, which are up before the training starts. With one worker,
    one core or no ``fork`` start method the work runs in this process.
    """

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        workers = min(workers, os.cpu_count() or 1)
        self._executor: ProcessPoolExecutor | None = None
        if workers >= 2 and "fork" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("fork")
            self._executor = ProcessPoolExecutor(workers, mp_context=context)
            list(self._executor.map(abs, range(workers)))  # fork the workers now

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``; ``fn`` must be a module-level function."""
        if self._executor is None or len(items) < 2:
            return [fn(x) for x in items]
        return list(self._executor.map(fn, items))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def __enter__(self) -> Cores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ExactOutcome:
    weights: np.ndarray
    #: The summed ``Enc(H)``, ``Enc(g)`` (recomputable from the trainers' messages).
    total: EncryptedSystem
    #: The model mod n, as the buyer decrypted it (for the residual check).
    w_mod: tuple[int, ...]
    systems: tuple[EncryptedSystem, ...] = field(repr=False)
    masked: tuple[MaskedSystem, ...] = field(repr=False)
    masked_sum: MaskedSystem = field(repr=False)
    encrypted_u: tuple[int, ...] = field(repr=False)
    encrypted_w: tuple[int, ...] = field(repr=False)


def train(
    terms: Sequence[QuadraticTerms],
    public_key: PublicKey,
    buyer: ExactBuyer,
    prep: Preparation,
    cores: Cores | None = None,
) -> ExactOutcome:
    """The data-dependent phases, in protocol order (spread over ``cores``)."""
    cores = cores or Cores(1)
    jobs = [
        TrainerJob(t, public_key, prep.precision_bits, prep.sent, f)
        for t, f in zip(terms, prep.trainer_factors, strict=True)
    ]
    messages = cores.map(trainer_messages, jobs)
    systems = tuple(s for s, _ in messages)
    masked = tuple(m for _, m in messages)
    total = sum_systems(systems, public_key)
    masked_sum = sum_masked(masked, public_key, prep.sum_factors)
    enc_u = buyer.solve_masked(masked_sum)
    enc_w = unmask(enc_u, prep.mask, public_key, prep.unmask_factors, cores.map)
    weights, w_mod = buyer.final_weights(enc_w)
    return ExactOutcome(weights, total, w_mod, systems, masked, masked_sum, enc_u, enc_w)
