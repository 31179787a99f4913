"""Evidence anyone can check: signed bodies, decryption proofs, the transcript, verification.

- :mod:`deltaml.evidence.signatures` — canonical bodies, digests, EIP-191 signatures;
- :mod:`deltaml.evidence.published` — published numbers as exact functions of
  proven plaintexts (shared by the buyer and the verifier);
- :mod:`deltaml.evidence.transcript` — the hash-chained public transcript and the
  sealed ciphertexts;
- :mod:`deltaml.evidence.verify` — :func:`~deltaml.evidence.verify.verify_transcript`,
  what ``deltaml verify`` runs, and what cannot be checked publicly.

Importing this package loads neither the verifier nor the roles.
"""

from deltaml.evidence.signatures import (
    body_digest,
    canonical_json,
    key_id,
    recover_signer,
    sign_body,
    vector_digest,
    vector_ref,
)
from deltaml.evidence.transcript import GENESIS, TranscriptWriter, record_hash, sealed_path_for

__all__ = [
    "GENESIS",
    "TranscriptWriter",
    "body_digest",
    "canonical_json",
    "key_id",
    "record_hash",
    "recover_signer",
    "sealed_path_for",
    "sign_body",
    "vector_digest",
    "vector_ref",
]
