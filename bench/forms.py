"""One batch of the Gram metric's forms, step by step (``metric_protocol: gram``).

Times every party's steps of one contributions batch — ``K`` vectors of ``D`` entries,
the pairs ``(k, k)`` and ``(k, Σ)`` — with the library calls the roles make
(``roles/forms.py``, ``roles/form_holder.py``): what each trainer adds to the CPU of
the first mask holder, the second (the remixer) — two validators — and the buyer (the
calling thread's: the key's randomizer thread is left out). The aggregator only routes
and records. Random vectors of the width the masks are sized for,
and a random Gram matrix, of the sizes ``bench/scale.py`` uses (20 features: ``D = 22``).

    python bench/forms.py --trainers 70 --runs 3
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from deltaml.crypto import generate_keypair
from deltaml.crypto.knowledge import check_added_plaintexts
from deltaml.crypto.proofs import prove_decryption
from deltaml.crypto.quadform import (
    EncryptedGram,
    MaskShare,
    add_masks_with_proof,
    combine,
    first_products,
    first_share,
    open_masked,
    second_share,
)
from deltaml.learning.gram_metric import contribution_pairs, form_mask_bits, opened_exponent

T = TypeVar("T")
EXPONENT, SCALE = 40, 1 << 33  # the contributions' vectors: exponent and encoded relaxation


def one_batch(trainers: int, size: int, key_bits: int) -> dict[str, float]:
    pk, sk = generate_keypair(key_bits, allow_test_keys=key_bits < 2048)
    rng = np.random.default_rng(0)
    rows = rng.integers(-(2**40), 2**40, (30, size)).astype(object)
    gram = EncryptedGram.encrypt(pk, [[int(v) for v in r] for r in rows.T @ rows])
    entry = 1 << (EXPONENT + 40 + SCALE.bit_length())
    vectors = [
        [
            pk.raw_encrypt(pk.encode_signed(secrets.randbelow(2 * entry) - entry))
            for _ in range(size)
        ]
        for _ in range(trainers)
    ]
    pairs = contribution_pairs(trainers)
    bits = form_mask_bits(EXPONENT, SCALE)
    times: dict[str, float] = {}

    def step(name: str, work: Callable[[], T]) -> T:
        t0 = time.thread_time()
        out = work()
        times[name] = time.thread_time() - t0
        return out

    first = MaskShare.draw(trainers, size, bits)
    second = MaskShare.draw(trainers, size, bits)
    masked, _ = step(
        "first holder: mask and prove", lambda: add_masks_with_proof(pk, b"b", vectors, first)
    )
    remixed, proof = step(
        "remixer: mask and prove", lambda: add_masks_with_proof(pk, b"b", masked, second)
    )
    cross = step("remixer: Enc(H·a²)", lambda: gram.times(second.masks))
    flat_in = [c for v in masked for c in v]
    flat_out = [c for v in remixed for c in v]
    step(
        "buyer: check the proof", lambda: check_added_plaintexts(pk, b"b", flat_in, flat_out, proof)
    )
    _, opened = step(
        "buyer: decrypt ũ (packed)",
        lambda: open_masked(sk, remixed, opened_exponent(EXPONENT, SCALE)),
    )
    v, products = step("first holder: Enc(H·v)", lambda: first_products(gram, first, opened))
    share = step("first holder: its share", lambda: first_share(pk, v, products, cross, pairs))
    forms = step(
        "remixer: its share and the sum",
        lambda: combine(pk, share, second_share(pk, second, cross, pairs)),
    )
    step("buyer: decrypt the forms", lambda: prove_decryption(sk, forms))
    return times


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainers", type=int, nargs="+", default=[70])
    p.add_argument("--size", type=int, default=22, help="D = features + 2 (default 22)")
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    for trainers in args.trainers:
        runs = [one_batch(trainers, args.size, args.key_bits) for _ in range(args.runs)]
        print(
            f"{trainers} trainers, D = {args.size}, {args.key_bits}-bit key: CPU seconds, "
            f"median of {args.runs} runs (per trainer in ms)"
        )
        for name in runs[0]:
            median = statistics.median(r[name] for r in runs)
            print(f"  {name:34s} {median:8.2f} s  {1000 * median / trainers:7.1f}")
        for party in ("first holder", "remixer", "buyer"):
            total = statistics.median(
                sum(v for k, v in r.items() if k.startswith(party)) for r in runs
            )
            print(f"  {party + ', all':34s} {total:8.2f} s  {1000 * total / trainers:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
