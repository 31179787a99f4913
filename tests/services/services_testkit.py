"""Helpers shared by the services tests."""

from __future__ import annotations

import dataclasses

import numpy as np

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.crypto.serialization import pack_vectors
from deltaml.protocol import messages as m

FEATURES = ["age", "bmi"]


def new_request(owners: int = 2, key=None) -> dict:
    public, _ = key or generate_keypair(512, allow_test_keys=True)
    initial = EncryptedVector.encrypt(public, np.zeros(len(FEATURES) + 1), 40)
    spec = m.TrainingSpec(model="linear", rounds=2)
    return {
        "chain_request_id": 0,
        "spec": dataclasses.asdict(spec),
        "requirements": {"features": FEATURES, "target": "y", "min_rows": 10, "owners": owners},
        "public_key": public.to_dict(),
        "initial_model": pack_vectors([initial]),
    }


def profile(name: str, columns: list[str], rows: int = 50) -> dict:
    return {
        "name": name,
        "rows": rows,
        "columns": [{"name": c, "type": "float", "nulls": 0} for c in columns],
    }
