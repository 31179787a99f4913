"""The transcript: a hash chain of signed evidence records, in JSON lines.

Two files per run
-----------------
Every ciphertext in a run is encrypted under the buyer's key, so the buyer can
decrypt any ciphertext it is shown. A single public file holding the trainers'
states or one validator's residual vector would hand the buyer exactly what the
protocol keeps from it (DESIGN.md, "Parties and what each may learn"). So a run
writes two files:

``run.jsonl`` — the **public transcript**, one record per line. It holds every
signed body, the decryption proofs, the published numbers, and in full only the
ciphertexts the buyer receives anyway (the statistics total, the metric vectors
and contribution columns it decrypts — remixed, or mixed when there is a single
validator — the initial and final models). Every other
ciphertext appears only as its SHA-256 inside the signed bodies. Its last record's
hash is what goes on the contract.

``run.sealed.jsonl`` — the **sealed ciphertexts**: one line per ciphertext vector,
``{"sha256": ..., "ciphertexts": <base64>}``, content-addressed by the digests the
public records sign. It lets an arbiter or the data owners recompute every
homomorphic step; it must never reach the buyer. The aggregator holds all of it
already.

Record format
-------------
::

    {"seq": 7, "prev": "<sha256 of record 6>", "type": "StateUpdate", "round": 1,
     "party": "owner-3", "signer": "0x…", "body": {...}, "signature": "0x…",
     "blobs": {"<sha256>": "<base64>"}}

``seq`` counts from 0; ``prev`` of record 0 is :data:`GENESIS`; a record's hash is
SHA-256 of its canonical JSON (:func:`record_hash`), every field included. ``type``
equals ``body["kind"]``; ``round`` is ``body["round"]`` or null. ``signature`` is the
signer's EIP-191 signature over the body (:mod:`deltaml.evidence.signatures`).
``blobs`` holds the public ciphertexts the body references.

The final record
----------------
The last record is the aggregator's ``Payouts``: it carries everything settlement
depends on, so that the transcript can be checked against the contract
(:func:`deltaml.evidence.verify.verify_against_chain`) and not only against itself:

- ``initial_metric``, ``final_metric`` — the scaled metrics (``scale_metric``) as
  posted by ``finish``; ``contribution_weights`` — the contributions as posted
  (one per trainer, in seat order);
- ``seats`` — ``{"trainers": [...], "validators": [...]}``, the participants'
  addresses in seat order, as ``start`` seats them;
- ``key_fingerprint`` — :func:`~deltaml.crypto.paillier.key_fingerprint` (hex) of
  the header's Paillier key, the request's ``keyHash``;
- ``chain`` — ``{"chain_id", "contract", "request_id", "requirements"}``
  (:class:`ChainBinding`), or ``null`` for a run escrowed nowhere;
- and the deposit, the rounds and the split recomputed by the payment rule.

The recorder completes the body with ``seats``, ``key_fingerprint`` and ``chain``
(:meth:`deltaml.roles.evidence.EvidenceRecorder.own`), from the addresses it
checks signatures against, the request's key and the writer's :attr:`chain`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deltaml.errors import DeltaMLValueError
from deltaml.evidence.signatures import canonical_json, decode_blob, encode_blob
from deltaml.protocol.json_limits import check_json_depth

#: Version 2: with two or more validators, ``Remix`` and ``RemixColumns`` records
#: sit between the aggregator's mixes and the buyer's decryptions. Version 3: the
#: buyer proves packed decryptions of metric vectors and contribution columns
#: (``slot_bits``, one plaintext and randomness per packed ciphertext). Version 4:
#: the final record (``Payouts``) binds the settlement: the seats' addresses, the
#: Paillier key fingerprint and the chain (see :class:`ChainBinding`).
FORMAT = "deltaml-transcript/4"
GENESIS = "0" * 64
RECORD_FIELDS = (
    "seq",
    "prev",
    "type",
    "round",
    "party",
    "signer",
    "body",
    "signature",
    "blobs",
)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical JSON: the link the next record carries."""
    return hashlib.sha256(canonical_json(dict(record))).hexdigest()


def sealed_path_for(path: str | Path) -> Path:
    """``run.jsonl`` → ``run.sealed.jsonl`` (next to the public transcript)."""
    p = Path(path)
    suffix = p.suffix or ".jsonl"
    return p.with_name(p.name.removesuffix(p.suffix) + ".sealed" + suffix)


@dataclass(frozen=True)
class ChainBinding:
    """Where a run is escrowed and settled: what its final record names.

    ``requirements`` is ``None`` when the request's spec hash is
    :func:`~deltaml.marketplace.spec_hash` of the header's spec alone (``deltaml
    simulate``), or the data requirements the marketplace services commit to along
    with it (``spec_hash({"spec": ..., "requirements": ...})``).
    """

    chain_id: int
    contract: str
    request_id: int
    requirements: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "request_id": self.request_id,
            "requirements": None if self.requirements is None else dict(self.requirements),
        }


@dataclass
class TranscriptWriter:
    """Appends records to the public stream and ciphertexts to the sealed one.

    Either stream may be ``None`` (nothing written); records are kept in memory
    when ``keep`` is set. Each record is flushed as it is written, so a run that
    stops half-way leaves a valid prefix. ``chain`` is where the run is escrowed
    (``None``: nowhere); the final record names it.
    """

    public: IO[str] | None = None
    sealed: IO[str] | None = None
    keep: bool = True
    head: str = GENESIS
    count: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    chain: ChainBinding | None = None
    #: Sealed ciphertexts by digest, kept (like ``records``) when ``keep`` is set.
    sealed_blobs: dict[str, bytes] = field(default_factory=dict)
    _sealed_seen: set[str] = field(default_factory=set)

    def append(
        self,
        *,
        party: str,
        signer: str,
        body: Mapping[str, Any],
        signature: str,
        public_blobs: Mapping[str, bytes] | None = None,
        sealed_blobs: Mapping[str, bytes] | None = None,
    ) -> dict[str, Any]:
        """Chain one signed body onto the transcript and return the record."""
        kind = body.get("kind")
        if not isinstance(kind, str):
            raise DeltaMLValueError("an evidence body needs a kind")
        record = {
            "seq": self.count,
            "prev": self.head,
            "type": kind,
            "round": body.get("round"),
            "party": party,
            "signer": signer,
            "body": dict(body),
            "signature": signature,
            "blobs": {d: encode_blob(b) for d, b in sorted((public_blobs or {}).items())},
        }
        for digest, blob in (sealed_blobs or {}).items():
            if digest in self._sealed_seen:
                continue
            self._sealed_seen.add(digest)
            if self.keep:
                self.sealed_blobs[digest] = blob
            if self.sealed is not None:
                self.sealed.write(
                    json.dumps({"sha256": digest, "ciphertexts": encode_blob(blob)}) + "\n"
                )
        if self.sealed is not None:
            self.sealed.flush()
        if self.public is not None:
            self.public.write(canonical_json(record).decode("ascii") + "\n")
            self.public.flush()
        self.head = record_hash(record)
        self.count += 1
        if self.keep:
            self.records.append(record)
        return record

    @classmethod
    def reopen(cls, path: str | Path, head: str, count: int) -> TranscriptWriter:
        """Reopen the transcript at ``path`` to append after its record ``count - 1``.

        A run that stopped (a crash, a restart) after ``count`` records it still
        stands by may have written more: those are cut off, so the chain goes on
        from ``head``. The sealed companion keeps every ciphertext it holds (one
        that no record names is harmless) and is not written twice.
        """
        public_path, sealed_path = Path(path), sealed_path_for(path)
        kept: list[str] = []
        with public_path.open("r", encoding="ascii") as f:
            for line in f:
                if len(kept) == count:
                    break
                kept.append(line)
        last = json.loads(kept[-1]) if kept else None
        if len(kept) != count or (record_hash(last) if last else GENESIS) != head:
            raise DeltaMLValueError(f"{public_path} does not hold the {count} records expected")
        public_path.write_text("".join(kept), encoding="ascii")
        seen: set[str] = set()
        if sealed_path.exists():
            good = []
            for line in sealed_path.read_text(encoding="ascii").splitlines(keepends=True):
                if line.endswith("\n"):  # a line cut short by a crash is dropped
                    seen.add(json.loads(line)["sha256"])
                    good.append(line)
            sealed_path.write_text("".join(good), encoding="ascii")
        writer = cls(
            public=public_path.open("a", encoding="ascii"),
            sealed=sealed_path.open("a", encoding="ascii"),
            keep=False,
            head=head,
            count=count,
        )
        writer._sealed_seen = seen
        return writer


#: Longest line the readers parse: a record with its public ciphertexts, or one sealed
#: vector, is far smaller. Lines are also refused when nested deeper than
#: :data:`deltaml.protocol.json_limits.MAX_JSON_DEPTH` (records need 6 levels): with the
#: Ethereum libraries loaded, Python's recursion limit is so high that the C JSON
#: parser overflows the C stack on deep input (a segmentation fault) instead of
#: raising. A transcript can come from another party, so both caps come first.
MAX_LINE_BYTES = 64 * 1024 * 1024


def _parse_line(p: Path, number: int, line: str) -> Any:
    """One line as JSON, or :class:`DeltaMLValueError` naming the file and the line."""
    if len(line) > MAX_LINE_BYTES:
        raise DeltaMLValueError(f"{p}: line {number} is longer than {MAX_LINE_BYTES} bytes")
    try:
        check_json_depth(line.encode("utf-8", "surrogatepass"))
        return json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError, DeltaMLValueError):  # JSONDecodeError is a ValueError
        raise DeltaMLValueError(f"{p}: line {number} is not JSON") from None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a public transcript, each a JSON object (fields not yet checked).

    Raises :class:`DeltaMLValueError` with one line naming the file and the line
    when the file is missing, unreadable, empty, or a line is not a JSON object
    (longer than :data:`MAX_LINE_BYTES`, or nested too deeply).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeltaMLValueError(f"{p}: no such transcript") from None
    except IsADirectoryError:
        raise DeltaMLValueError(f"{p}: is a directory, not a transcript") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeltaMLValueError(f"{p}: cannot read the transcript ({exc})") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        value = _parse_line(p, number, line)
        if not isinstance(value, dict):
            raise DeltaMLValueError(f"{p}: line {number} is not a JSON object")
        records.append(value)
    if not records:
        raise DeltaMLValueError(f"{p}: the transcript is empty")
    return records


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def read_sealed(path: str | Path) -> dict[str, bytes]:
    """Sealed ciphertexts by digest (digests are checked against the contents later)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeltaMLValueError(f"{p}: no such file of sealed ciphertexts") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeltaMLValueError(f"{p}: cannot read the sealed ciphertexts ({exc})") from None
    out: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = _parse_line(p, number, line)
            digest = value["sha256"]
            blob = decode_blob(value["ciphertexts"])
        except (json.JSONDecodeError, KeyError, TypeError, DeltaMLValueError):
            raise DeltaMLValueError(
                f"{p}: line {number} is not a sealed ciphertext entry"
            ) from None
        if not isinstance(digest, str):
            raise DeltaMLValueError(f"{p}: line {number} has no digest")
        out[digest] = blob
    return out


def final_model_digest(records: list[dict[str, Any]]) -> str | None:
    """The digest of the final model a transcript commits to (its final broadcast, or
    the exact solve's ``ExactModel``), or ``None`` if it names none. The ciphertexts
    themselves are sealed."""
    for record in reversed(records):
        body = record.get("body")
        if not isinstance(body, dict):
            continue
        ref = None
        if body.get("kind") == "Broadcast" and body.get("purpose") == "final":
            ref = body.get("outgoing")
        elif body.get("kind") == "ExactModel":
            ref = body.get("model")
        if isinstance(ref, dict):
            digest = ref.get("sha256")
            return digest if isinstance(digest, str) else None
    return None
