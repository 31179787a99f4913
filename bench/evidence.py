"""Benchmark: what the evidence costs — signing, proofs, the transcript — and verifying it.

Runs ``deltaml simulate``'s protocol (diabetes, five owners, default rounds) with the
transcript written to a temporary file, timing separately, inside the run:

- **signing**: the parties building and signing their replies' bodies;
- **signature checks and recording**: the aggregator recovering each signer and
  chaining the record into the transcript (canonical JSON, SHA-256, writing);
- **own records**: the aggregator signing and writing its own records;
- **proofs**: the buyer's ``randomness_of`` for every value it decrypts (decryption
  itself is not counted: it was needed before);

and, after the run, ``verify_transcript`` with and without the sealed ciphertexts.

Usage::

    python bench/evidence.py                  # 2048-bit key, 3 repetitions
    python bench/evidence.py --key-bits 512 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deltaml.crypto import (
    EncryptedVector,
    check_decryption,
    failed_decryptions,
    generate_keypair,
    prove_decryption,
)
from deltaml.crypto.paillier import PrivateKey
from deltaml.evidence.verify import verify_transcript
from deltaml.roles import buyer as buyer_module
from deltaml.roles import data_owner as owner_module
from deltaml.roles.evidence import EvidenceRecorder
from deltaml.simulation import SimulationConfig, run_simulation


@contextmanager
def timed(spent: Counter[str]) -> Iterator[None]:
    """Wrap the evidence functions so that their time accumulates in ``spent``."""
    patches: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t0

        patches.append((owner, name, original))
        setattr(owner, name, timed_call)

    wrap(owner_module, "sign_message", "signing (owners)")
    wrap(buyer_module, "sign_message", "signing (buyer)")
    wrap(EvidenceRecorder, "accept", "signature checks + recording")
    wrap(EvidenceRecorder, "own", "aggregator's own records")
    wrap(PrivateKey, "randomness_of", "proofs (randomness_of)")
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def one_run(key_bits: int, directory: Path) -> dict[str, float]:
    spent: Counter[str] = Counter()
    path = directory / f"run-{time.monotonic_ns()}.jsonl"
    config = SimulationConfig(
        key_bits=key_bits,
        allow_test_keys=key_bits < 2048,
        transcript=str(path),
        verify=False,
    )
    with timed(spent):
        result = run_simulation(config)
    out: dict[str, float] = {"protocol (train() total)": result.seconds}
    out.update(spent)
    out["evidence total"] = sum(spent.values())
    t0 = time.perf_counter()
    full = verify_transcript(path)
    out["verify, with sealed ciphertexts"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    public = verify_transcript(path, use_sealed=False)
    out["verify, public only"] = time.perf_counter() - t0
    assert full.ok and public.ok, (full.failures, public.failures)
    sealed = path.with_name(path.stem + ".sealed.jsonl")
    out["transcript kB"] = path.stat().st_size / 1000
    out["sealed kB"] = sealed.stat().st_size / 1000
    out["records"] = full.records
    return out


def primitives(key_bits: int, values: int = 120) -> dict[str, float]:
    """Per-value costs: the proof by CRT against the direct root; batch against single checks."""
    public, private = generate_keypair(key_bits, allow_test_keys=key_bits < 2048)
    vector = EncryptedVector.encrypt_ints(public, list(range(values)), 0)
    cts = [int(c) for c in vector.ciphertexts]
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for c in cts:
        private._randomness_of_direct(c)
    out["proof, direct root (ms/value)"] = 1e3 * (time.perf_counter() - t0) / values
    t0 = time.perf_counter()
    ms, rs = prove_decryption(private, cts)
    decrypt_and_prove = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c, m in zip(cts, ms, strict=True):
        private.randomness_of(c, m)
    out["proof, CRT root (ms/value)"] = 1e3 * (time.perf_counter() - t0) / values
    out["decryption + CRT proof (ms/value)"] = 1e3 * decrypt_and_prove / values
    t0 = time.perf_counter()
    assert all(check_decryption(public, c, m, r) for c, m, r in zip(cts, ms, rs, strict=True))
    out["check, one by one (ms/value)"] = 1e3 * (time.perf_counter() - t0) / values
    t0 = time.perf_counter()
    for start in range(0, values, 12):  # vectors of 12, as in the metric protocol
        end = start + 12
        assert not failed_decryptions(public, cts[start:end], ms[start:end], rs[start:end])
    out["check, batches of 12 (ms/value)"] = 1e3 * (time.perf_counter() - t0) / values
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            runs.append(one_run(args.key_bits, Path(tmp)))
    summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    summary.update(primitives(args.key_bits))
    if args.json:
        print(json.dumps({"key_bits": args.key_bits, "repeat": args.repeat, "median": summary}))
        return 0
    print(f"evidence costs, diabetes, {args.key_bits}-bit key, median of {args.repeat}")
    for key, value in summary.items():
        if "ms/value" in key:
            continue
        unit = "" if key.endswith("kB") or key == "records" else " s"
        print(f"  {key:<36} {value:10.3f}{unit}")
    for key, value in summary.items():
        if "ms/value" in key:
            print(f"  {key:<36} {value:10.3f}")
    share = summary["evidence total"] / summary["protocol (train() total)"]
    print(f"  evidence share of the protocol time   {100 * share:6.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
